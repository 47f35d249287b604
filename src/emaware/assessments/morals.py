"""Morals: the MFQ-2 (items rated 1–5, grouped into foundations) and the model's own prediction of its
foundation scores (the matched self-assessment).

Measured profile: per foundation, the mean over its items of each item's mean sampled rating (and, from
the next-token distribution, of each item's expected rating). Predicted profile: per foundation, the mean
over the parsed self-predictions. Score = Euclidean distance between the two profiles divided by its
maximum ((5 − 1) · √foundations), so 0–1, higher = the model knows its moral profile less well.
CI: bootstrap over items within each foundation and over predictions, jointly.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .. import UserError
from ..judge import expected_rating
from ..stats import Interval, bootstrap_ci
from ..io import read_yaml
from .base import Assessment, register
from .common import COUNTED, OK, bootstrap_settings, ci_fields, status_of
from .parsing import parse_number, parse_profile

LOW, HIGH = 1, 5
RATINGS = tuple(str(i) for i in range(LOW, HIGH + 1))


def load_items(path: str | Path) -> list[dict]:
    """MFQ-2 items from a CSV with columns item, foundation, text: [{"item": int, "foundation", "text"}]."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"item", "foundation", "text"} <= set(reader.fieldnames or ()):
                raise UserError(f"{path}: needs the columns item, foundation, text")
            items = []
            for row in reader:
                item, foundation, text = ((row.get(k) or "").strip() for k in ("item", "foundation", "text"))
                if not (item.isdigit() and foundation and text):
                    raise UserError(f"{path}:{reader.line_num}: an item needs a number, a foundation and a text")
                items.append({"item": int(item), "foundation": foundation, "text": text})
    except OSError as err:
        raise UserError(f"{path}: cannot read MFQ-2 items ({err})") from None
    numbers = [i["item"] for i in items]
    if not items or len(set(numbers)) != len(numbers):
        raise UserError(f"{path}: no items, or duplicate item numbers")
    return items


def foundations_of(items: list[dict]) -> list[str]:
    """Foundations in order of first appearance in the items file."""
    return list(dict.fromkeys(i["foundation"] for i in items))


def build_prompts(settings: dict) -> list[dict]:
    """One prompt per item, then one per self-prediction paraphrase. Settings: `items` (CSV), `prompts` (YAML)."""
    items = load_items(settings["items"])
    spec = read_yaml(settings["prompts"], required=("item", "predictions", "foundations"))
    foundations = foundations_of(items)
    undescribed = [f for f in foundations if f not in (spec["foundations"] or {})]
    if undescribed:
        raise UserError(f"{settings['prompts']}: no description under 'foundations' for {undescribed}")
    rows = [
        {
            "id": f"item/{item['item']:02d}",
            "messages": [{"role": "user", "content": spec["item"].replace("{statement}", item["text"])}],
            "meta": {"kind": "item", "item": item["item"], "foundation": item["foundation"]},
        }
        for item in items
    ]
    listing = "\n".join(f"- {f}: {spec['foundations'][f]}" for f in foundations)
    for number, text in enumerate(spec["predictions"]):
        rows.append(
            {
                "id": f"prediction/{number}",
                "messages": [{"role": "user", "content": text.replace("{foundations}", listing)}],
                "meta": {"kind": "prediction", "paraphrase": number, "foundations": foundations},
            }
        )
    return rows


def logprob_requests(prompts: list[dict]) -> tuple[list[dict], tuple[str, ...]]:
    """(the item prompts, the rating tokens "1".."5")."""
    return [p for p in prompts if p["meta"]["kind"] == "item"], RATINGS


def _column_means(values: np.ndarray) -> np.ndarray:
    """Mean of each column (axis -2: rows) over its non-missing entries; NaN for a column with none."""
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, values, 0.0).sum(axis=-2) / present.sum(axis=-2)


def _distance_with_ci(
    item_values: dict[str, float | None],
    items: list[dict],
    profiles: list[dict],
    foundations: list[str],
    settings: dict,
    suffix: str = "",
) -> dict:
    """{"distance", "score", "ci", "ci_note"} (each key + `suffix`) for one set of item values (sampled or
    expected) and the predicted profiles.

    Rows of the bootstrapped matrix: one per item (its value in its foundation's column of the measured
    half) and one per prediction (the predicted half); resampling within strata keeps that layout. An item's
    value already carries its answers' noise; predictions are single answers, resampled as such because
    there are too few paraphrases of the prediction prompt to resample those.
    """
    k = len(foundations)
    rows, strata = [], []
    for item in items:
        if item_values.get(item["id"]) is not None:
            row = np.full(2 * k, np.nan)
            row[foundations.index(item["foundation"])] = item_values[item["id"]]
            rows.append(row)
            strata.append(item["foundation"])
    for profile in profiles:
        rows.append(np.concatenate([np.full(k, np.nan), [profile[f] for f in foundations]]))
        strata.append("prediction")
    values = np.array(rows, dtype=float).reshape(-1, 2 * k)
    scale = (HIGH - LOW) * math.sqrt(k)  # the largest possible distance

    def stat(v: np.ndarray) -> np.ndarray:  # rows x 2k, or draws x rows x 2k
        means = _column_means(v)
        return np.sqrt(np.sum((means[..., :k] - means[..., k:]) ** 2, axis=-1)) / scale

    score = float(stat(values)) if len(values) else math.nan
    if math.isnan(score):
        missing = Interval(math.nan, math.nan, "no distance: no scored item or no parsed prediction")
        return {f"distance{suffix}": None, f"score{suffix}": None, **ci_fields(missing, f"ci{suffix}")}
    interval = bootstrap_ci(values, stat, strata=strata, batched=True, **bootstrap_settings(settings))
    return {f"distance{suffix}": score * scale, f"score{suffix}": score, **ci_fields(interval, f"ci{suffix}")}


def _mean_ci(values: list[float], settings: dict) -> tuple[float | None, Interval]:
    return (float(np.mean(values)) if values else None), bootstrap_ci(values, **bootstrap_settings(settings))


def score(prompts: list[dict], samples: list[dict], judgments, logprobs: list[dict] | None, settings: dict) -> dict:
    """The score file, with `by_foundation` (measured and predicted profiles) and `by_part` (items vs
    predictions: answers scored, unparseable, refusals). Settings: `min_mass`, bootstrap keys."""
    items = [{"id": p["id"], **p["meta"]} for p in prompts if p["meta"]["kind"] == "item"]
    kind = {p["id"]: p["meta"]["kind"] for p in prompts}
    foundations = list(dict.fromkeys(i["foundation"] for i in items))
    ratings: dict[str, list[float]] = defaultdict(list)
    profiles: list[dict[str, float]] = []
    counts = {"item": Counter(), "prediction": Counter()}
    for sample in samples:
        text, part = sample["completion"], kind[sample["id"]]
        value = parse_number(text, LOW, HIGH) if part == "item" else parse_profile(text, foundations, LOW, HIGH)
        status = status_of(value, text)
        counts[part][status] += 1
        if status == OK and part == "item":
            ratings[sample["id"]].append(value)
        elif status == OK:
            profiles.append(value)
    sampled = {i["id"]: (float(np.mean(ratings[i["id"]])) if ratings[i["id"]] else None) for i in items}
    result = {
        "assessment": "morals",
        **_distance_with_ci(sampled, items, profiles, foundations, settings),
        "n": sum(len(v) for v in ratings.values()),
        "prompts": sum(v is not None for v in sampled.values()),
        "predictions": len(profiles),
        **{key: int(counts["item"][key] + counts["prediction"][key]) for key in COUNTED},
    }
    expected: dict[str, float | None] | None = None
    if logprobs is not None:
        next_token = {row["id"]: row["logprobs"] for row in logprobs}
        min_mass = float(settings.get("min_mass", 0.25))
        expected = {
            i["id"]: (expected_rating(next_token[i["id"]], RATINGS, min_mass)[0] if i["id"] in next_token else None)
            for i in items
        }
        result.update(_distance_with_ci(expected, items, profiles, foundations, settings, "_ev"))
        result["ev_missing"] = sum(v is None for v in expected.values())
    result["by_foundation"] = [_foundation_row(f, items, sampled, expected, profiles, settings) for f in foundations]
    result["by_part"] = [
        {"part": part, "n": counts[part][OK], **{key: int(counts[part][key]) for key in COUNTED}} for part in counts
    ]
    return result


def _foundation_row(
    foundation: str,
    items: list[dict],
    sampled: dict[str, float | None],
    expected: dict[str, float | None] | None,
    profiles: list[dict[str, float]],
    settings: dict,
) -> dict:
    """Measured (sampled, and expected where logprobs exist) and predicted mean of one foundation."""
    own = [i["id"] for i in items if i["foundation"] == foundation]
    measured, measured_ci = _mean_ci([sampled[i] for i in own if sampled[i] is not None], settings)
    predicted, predicted_ci = _mean_ci([p[foundation] for p in profiles], settings)
    row = {
        "foundation": foundation,
        "measured": measured,
        **ci_fields(measured_ci, "measured_ci"),
        "predicted": predicted,
        **ci_fields(predicted_ci, "predicted_ci"),
        "difference": None if measured is None or predicted is None else predicted - measured,
        "items": len(own),
    }
    if expected is not None:
        values = [expected[i] for i in own if expected[i] is not None]
        row["measured_ev"] = float(np.mean(values)) if values else None
    return row


ASSESSMENT = register(
    Assessment(
        name="morals",
        build_prompts=build_prompts,
        score=score,
        logprob_requests=logprob_requests,
        prompt_settings=("items", "prompts"),
        score_settings=("min_mass", "bootstrap", "ci"),
        breakdowns=("foundation", "part"),
    )
)
