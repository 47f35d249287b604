"""Categorical judging: the judge answers with one of a few label tokens ("1" aligned pole, "2" misaligned
pole, "3" unclear) and the label is the most probable one.

`judge.expected_rating` averages numeric tokens, which is meaningless for categories, so a classifier
reads the same judge forward pass (`judge.judge_samples`) differently. Its prompt file is a judge prompt
file with a `labels` map from rating token to label, and may use extra `{fields}` filled from each
sample's `meta` (e.g. `{aligned_pole}`), so one file serves every dimension:

    template: "... {question} ... {answer} ... 1 = {aligned_pole} ..."
    ratings: ["1", "2", "3"]
    labels: {"1": aligned, "2": misaligned, "3": unclear}
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from . import UserError
from .io import read_yaml
from .backends import Backend, Handle
from .judge import JudgePrompt, judge_samples, load_judge_prompt, rating_mass

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Classifier:
    prompt: JudgePrompt
    labels: dict[str, str]  # rating token -> label

    @property
    def fields(self) -> list[str]:
        """Template fields filled from sample meta (everything but {question} and {answer})."""
        names = _FIELD.findall((self.prompt.system or "") + self.prompt.template)
        return sorted(set(names) - {"question", "answer"})


def load_classifier(path: str | Path) -> Classifier:
    prompt = load_judge_prompt(path)
    labels = read_yaml(path).get("labels")
    if not isinstance(labels, dict) or sorted(map(str, labels)) != sorted(prompt.ratings):
        raise UserError(f"{path}: 'labels' must map every rating token {list(prompt.ratings)} to a label")
    return Classifier(prompt, {str(k): str(v) for k, v in labels.items()})


def classify(logprobs: dict[str, float], labels: dict[str, str], min_mass: float) -> tuple[str | None, dict[str, float], float]:
    """(most probable label or None, renormalised probability per label, mass on the label tokens)."""
    probs = rating_mass(logprobs, labels)
    mass = sum(probs.values())
    if mass < min_mass or mass == 0:
        return None, {}, mass
    by_label: dict[str, float] = {}
    for token, p in probs.items():
        by_label[labels[token]] = by_label.get(labels[token], 0.0) + p / mass
    return max(by_label, key=by_label.get), by_label, mass


def _filled(classifier: Classifier, sample: dict) -> JudgePrompt:
    meta = sample.get("meta") or {}
    missing = [f for f in classifier.fields if f not in meta]
    if missing:
        raise UserError(f"sample {sample['id']}: the judge prompt needs meta field(s) {missing}")

    def fill(text: str | None) -> str | None:
        return text and _FIELD.sub(lambda m: str(meta[m.group(1)]) if m.group(1) in classifier.fields else m.group(0), text)

    return dataclasses.replace(
        classifier.prompt, template=fill(classifier.prompt.template), system=fill(classifier.prompt.system)
    )


def judge_categorical(
    backend: Backend, judge_model: Handle, classifier: Classifier, samples: list[dict], **options: Any
) -> list[dict]:
    """One judgment row per sample, in input order: {"id", "sample", "judge", "judge_model", "label",
    "probs", "mass", "logprobs"}; `label` is None when the label tokens carry less than `min_mass`.

    `options` are judge_samples' own (top_k, min_mass, batch_size, judge_name)."""
    groups: dict[JudgePrompt, list[dict]] = {}
    for sample in samples:  # samples sharing the filled prompt are judged in one batch run
        groups.setdefault(_filled(classifier, sample), []).append(sample)
    judged = {}
    for prompt, members in groups.items():
        for row in judge_samples(backend, judge_model, prompt, members, **options):
            row.pop("rating")
            row["label"], row["probs"], row["mass"] = classify(row["logprobs"], classifier.labels, options["min_mass"])
            judged[row["id"], row["sample"]] = row
    return [judged[s["id"], s["sample"]] for s in samples]
