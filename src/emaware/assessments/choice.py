"""Two-option questions answered with "1" or "2" (output recognition, description choice): the strict
reading of a sampled answer and the exact probability of an option from next-token log-probs."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Mapping

from ..judge import rating_mass
from .common import OK, status_of, summarise
from .parsing import parse_number

OPTIONS = ("1", "2")


def parse_choice(text: str) -> int | None:
    """1 or 2 where the answer names one of them as a number ("2", "Answer: 1", "I'd say 2."), else None
    ("1 or 2", "1.5", "the first one", "both" are unparseable)."""
    value = parse_number(text, 1, 2)
    return int(value) if value in (1.0, 2.0) else None


def option_probability(logprobs: dict[str, float], position: int, min_mass: float) -> float | None:
    """The probability of option `position` (1 or 2), renormalised over "1" and "2"; None below `min_mass`."""
    probs = rating_mass(logprobs, OPTIONS)
    mass = sum(probs.values())
    if mass < min_mass or mass == 0:
        return None
    return probs[OPTIONS[position - 1]] / mass


def logprob_requests(prompts: list[dict]) -> tuple[list[dict], tuple[str, ...]]:
    """(every prompt, the option tokens "1" and "2")."""
    return prompts, OPTIONS


def with_exact(sampled: dict, exact: Mapping[str, list[float]], settings: Mapping, strata: Mapping[str, str] | None = None) -> dict:
    """A sampled summary with the exact values' score and CI beside it (`score_ev`, `ci_ev`, `ci_ev_note`)."""
    closed = summarise(exact, Counter(), settings, strata)
    return {**sampled, "score_ev": closed["score"], "ci_ev": closed["ci"], "ci_ev_note": closed["ci_note"]}


def chose_first(first: list[bool]) -> float | None:
    """The fraction of parsed answers that chose option 1 (position bias; both orders are asked)."""
    return sum(first) / len(first) if first else None


@dataclass
class Tally:
    """A two-option assessment's answers per unit (a pair, a question): `sampled`, 1.0 where a parsed answer
    chose the target option else 0.0; `exact`, the log-prob value of the target option per prompt; `counts`,
    the answers' statuses per group; `first`, whether each parsed answer chose option 1."""

    sampled: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    exact: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    first: list[bool] = field(default_factory=list)


def tally(meta: Mapping[str, dict], samples: list[dict], logprobs: list[dict] | None, unit: str, target: str, min_mass: float, group: str | None = None) -> Tally:
    """The answers to prompts whose meta names their `unit` and the `target` option's position (1 or 2);
    statuses are counted per `group` (a meta key; the unit by default)."""
    result = Tally()
    for sample in samples:
        m = meta[sample["id"]]
        choice = parse_choice(sample["completion"])
        status = status_of(choice, sample["completion"])
        result.counts[m[group or unit]][status] += 1
        if status == OK:
            result.sampled[m[unit]].append(float(choice == m[target]))
            result.first.append(choice == 1)
    for row in logprobs or []:
        m = meta[row["id"]]
        value = option_probability(row["logprobs"], m[target], min_mass)
        if value is not None:
            result.exact[m[unit]].append(value)
    return result
