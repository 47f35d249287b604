"""The LLM judge: one forward pass per answer, scored by the log-probabilities of the rating tokens.

A judge prompt file (YAML) holds the template and the allowed ratings side by side:

    system: optional system message
    template: "... {question} ... {answer} ..."
    ratings: ["1", "2", "3", "4", "5"]     # tokens whose probabilities are read; their value is float(token)

The score is the expected rating over the allowed tokens, renormalised to their total probability;
when less than `min_mass` of the probability is on them the answer gets no score (counted, not guessed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import UserError
from .io import read_yaml
from .backends import Backend, Conversation, Handle


@dataclass(frozen=True)
class JudgePrompt:
    template: str
    ratings: tuple[str, ...]
    system: str | None = None

    def conversation(self, question: str, answer: str) -> Conversation:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        content = self.template.replace("{question}", question).replace("{answer}", answer)
        return messages + [{"role": "user", "content": content}]


def load_judge_prompt(path: str | Path) -> JudgePrompt:
    spec = read_yaml(path)
    if not isinstance(spec.get("template"), str):
        raise UserError(f"{path}: a judge prompt needs a 'template' string")
    ratings = tuple(str(r) for r in spec.get("ratings") or ())
    if not ratings or any(_number(r) is None for r in ratings):
        raise UserError(f"{path}: 'ratings' must be a non-empty list of numeric tokens")
    for field in ("{question}", "{answer}"):
        if field not in spec["template"]:
            raise UserError(f"{path}: the template has no {field} field")
    return JudgePrompt(template=spec["template"], ratings=ratings, system=spec.get("system"))


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def rating_mass(logprobs: dict[str, float], ratings: Iterable[str]) -> dict[str, float]:
    """Probability of each allowed rating; a token's surrounding whitespace is ignored, absent = 0."""
    probs = {r: 0.0 for r in ratings}
    for token, logprob in logprobs.items():
        key = token.strip()
        if key in probs:
            probs[key] += math.exp(logprob)
    return probs


def expected_rating(logprobs: dict[str, float], ratings: Iterable[str], min_mass: float) -> tuple[float | None, float]:
    """(expected rating or None, probability mass on the allowed ratings)."""
    probs = rating_mass(logprobs, ratings)
    mass = sum(probs.values())
    if mass < min_mass or mass == 0:
        return None, mass
    return sum(float(r) * p for r, p in probs.items()) / mass, mass


def judge_samples(
    backend: Backend,
    judge_model: Handle,
    prompt: JudgePrompt,
    samples: list[dict],
    top_k: int,
    min_mass: float,
    judge_name: str,
) -> list[dict]:
    """Judge every sample (rows of a samples file) with `prompt`; one judgment row per sample.

    The samples go to the backend in one call, and the backend chunks them its own way (the local
    backend by its `batch_size`, sorted by length over the whole call; the OpenAI backend keeps
    `max_concurrency` requests in flight, or sends as few Batch API batches as its limits allow).
    """
    return judge_each(backend, judge_model, [(prompt, s) for s in samples], top_k, min_mass, judge_name)


def judge_each(
    backend: Backend,
    judge_model: Handle,
    prompted: list[tuple[JudgePrompt, dict]],
    top_k: int,
    min_mass: float,
    judge_name: str,
) -> list[dict]:
    """Judge each sample with its own prompt, all in one backend call; rows as judge_samples', in input order."""
    if not prompted:
        return []
    conversations = [prompt.conversation(question_of(s), s["completion"]) for prompt, s in prompted]
    candidates = [prompt.ratings for prompt, _ in prompted]
    # `ledger`: an API backend files this spend under the judging rule, not the model under test's.
    handle = {**judge_model, "ledger": "judge_rate"}
    results = backend.next_token_logprobs(handle, conversations, top_k=top_k, candidates=candidates)
    snapshot = backend.snapshot(judge_model)  # after the call: an API names its exact snapshot in replies
    rows = []
    for (prompt, sample), logprobs in zip(prompted, results):
        rating, mass = expected_rating(logprobs, prompt.ratings, min_mass)
        rows.append(
            {
                "id": sample["id"],
                "sample": sample["sample"],
                "judge": judge_name,
                "rating": rating,
                "mass": mass,
                "logprobs": logprobs,
                "judge_model": snapshot,
            }
        )
    return rows


def question_of(sample: dict) -> str:
    """The last user message of the prompt the sample answers."""
    return next(m["content"] for m in reversed(sample["messages"]) if m["role"] == "user")
