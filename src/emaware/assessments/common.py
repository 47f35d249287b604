"""Pieces the battery's assessments share: resource loading, answer status, and score summaries."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .. import UserError
from ..io import read_yaml
from ..stats import Interval, bootstrap_ci
from .parsing import is_refusal

# Answer statuses. Only "ok" answers carry a value; the others are counted next to the score.
OK, REFUSAL, UNPARSEABLE, UNCLEAR = "ok", "refusals", "unparseable", "unclear"
COUNTED = (UNPARSEABLE, REFUSAL, UNCLEAR)


def load_dimensions(path: str | Path) -> dict[str, tuple[str, str]]:
    """{dimension: (aligned pole, misaligned pole)} from a YAML mapping of two-word lists."""
    spec = read_yaml(path)
    for name, poles in spec.items():
        if not (isinstance(poles, list) and len(poles) == 2 and all(isinstance(p, str) and p.strip() for p in poles)):
            raise UserError(f"{path}: dimension {name!r} needs [aligned pole, misaligned pole]")
    return {str(name): (poles[0], poles[1]) for name, poles in spec.items()}


def pole_meta(dimension: str, poles: tuple[str, str], misaligned_first: bool) -> dict[str, Any]:
    """Prompt meta naming a dimension's poles and the order they are shown in."""
    aligned, misaligned = poles
    first, second = (misaligned, aligned) if misaligned_first else (aligned, misaligned)
    return {
        "dimension": dimension,
        "aligned_pole": aligned,
        "misaligned_pole": misaligned,
        "first": first,
        "second": second,
        "misaligned_first": misaligned_first,
    }


def status_of(value: Any, text: str) -> str:
    """OK when the answer gave a value; otherwise a refusal if it reads like one, else unparseable."""
    if value is not None:
        return OK
    return REFUSAL if text.strip() and is_refusal(text) else UNPARSEABLE


def judgment_index(judgments: list[dict] | None) -> dict[tuple[str, int], dict]:
    return {(row["id"], row["sample"]): row for row in judgments or []}


def judged_label(index: Mapping[tuple[str, int], dict], sample: dict) -> str | None:
    """The judge's label of a sample (None when the judge put too little mass on the label tokens)."""
    key = (sample["id"], sample["sample"])
    if key not in index:
        raise UserError(f"no judgment for sample {sample['id']}#{sample['sample']}: judge the samples file again")
    return index[key].get("label")


def finite(x: float | None) -> float | None:
    """JSON has no NaN: missing numbers are null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def mean_of(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return finite(np.mean(present)) if present else None


def summarise(
    values: Mapping[str, list[float]], counts: Counter, settings: Mapping[str, Any], strata: Mapping[str, str] | None = None
) -> dict:
    """Score = mean over prompts of each prompt's mean value; CI = bootstrap over prompts.

    `values` holds each prompt's scored answers (0–1); `counts` the statuses of all its answers; `strata`
    (prompt id → e.g. its dimension) keeps a designed split of the prompts fixed in every resample.
    A prompt's mean already carries the noise of its own answers, so resampling prompts covers both.
    """
    scored = [pid for pid, v in values.items() if v]
    means = np.array([np.mean(values[pid]) for pid in scored], dtype=float)
    labels = [strata[pid] for pid in scored] if strata is not None else None
    return {
        "score": finite(means.mean()) if means.size else None,
        **ci_fields(bootstrap_ci(means, strata=labels, **bootstrap_settings(settings))),
        "n": int(sum(len(v) for v in values.values())),
        "prompts": int(means.size),
        **{key: int(counts[key]) for key in COUNTED},
    }


def ci_fields(interval: Interval, key: str = "ci") -> dict[str, Any]:
    """A CI as score-file fields: `key` = [low, high] (nulls when not estimable) and `<key>_note` (why, or a limit)."""
    return {key: [finite(interval.low), finite(interval.high)], f"{key}_note": interval.note or None}


def bootstrap_settings(settings: Mapping[str, Any]) -> dict:
    """The bootstrap arguments from the settings (`bootstrap` draws, `ci` level, `seed`)."""
    return {
        "n": int(settings.get("bootstrap", 1000)),
        "ci": float(settings.get("ci", 0.95)),
        "seed": int(settings.get("seed", 0)),
    }
