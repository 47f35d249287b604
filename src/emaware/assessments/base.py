"""What an assessment declares, after Inspect AI's registered tasks and scorers: what it needs from a
variant (sampled answers, next-token log-probs of the model under test, a rating or a label judge),
which breakdown tables it adds, which settings its prompts and its score read, how it builds its
prompts and how it scores. The workflow's rules are built from these declarations (which outputs a
variant's sampling job writes, which answers its judging job reads and how, what scoring gets), so a
new assessment is one module that registers itself, plus its resources and its config block.

An assessment that shows a variant answers of other variants (output recognition) declares
`answers_of`: the settings key naming the assessment whose answers it reads. Its prompts are then
built per variant, from that assessment's samples of the variant and of its other variants, so it is
sampled by a second job per variant, after the sampling jobs it reads (workflow/rules/sample.smk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from .. import conditions

# How the judge reads an answer: "rating" = the expected value of the numeric rating tokens
# (emaware.judge); "label" = the most probable pole label, counterbalanced over both orders
# (emaware.classify), on the samples the assessment's `to_judge` picks and annotates; "scale100" = the
# aligned and coherent 0–100 judges of Betley et al., whose prompts each sample's meta carries
# (emaware.judge_scale).
JUDGES = ("rating", "label", "scale100")


@dataclass(frozen=True)
class Assessment:
    name: str
    # settings -> prompt rows {"id", "messages", "meta"}; with `answers_of`: (settings, the variant's samples
    # of that assessment, {other variant's path: its samples}) -> the variant's prompt rows
    build_prompts: Callable[..., list[dict]]
    score: Callable[..., dict]  # (prompts, samples, judgments, logprobs, settings) -> the score record
    judge: str | None = None  # None, or one of JUDGES
    to_judge: Callable[[list[dict]], list[dict]] | None = None  # label judges: the samples to classify
    logprob_requests: Callable[[list[dict]], tuple[list[dict], tuple[str, ...]]] | None = None
    prompt_settings: tuple[str, ...] = ()  # the settings keys build_prompts reads (its rule's params)
    score_settings: tuple[str, ...] = ()  # the settings keys score reads
    breakdowns: tuple[str, ...] = ()  # a `by_<name>.tsv` table beside variants.tsv for each
    answers_of: str | None = None  # the settings key naming the assessment whose answers of other variants it shows
    # Whose answers it shows beside the variant's own: other variants' (`others`: base, parent or siblings), or
    # other sources' from the datasets its `others` key names (read by build_prompts from its settings).
    others_from: str = "variants"

    def __post_init__(self) -> None:
        if self.judge is not None and self.judge not in JUDGES:
            raise ValueError(f"assessment {self.name}: judge {self.judge!r} is not one of {JUDGES}")
        if self.others_from not in ("variants", "datasets"):
            raise ValueError(f"assessment {self.name}: others_from {self.others_from!r} is not 'variants' or 'datasets'")
        if (self.judge == "label") != (self.to_judge is not None):
            raise ValueError(f"assessment {self.name}: a label judge needs to_judge, and only a label judge takes it")

    @property
    def needs_judge(self) -> bool:
        return self.judge is not None

    @property
    def needs_logprobs(self) -> bool:
        return self.logprob_requests is not None

    @property
    def reads_other_variants(self) -> bool:
        return self.answers_of is not None

    def judged_samples(self, samples: list[dict]) -> list[dict]:
        """The samples the judge reads: all of them for a rating judge, the picked ones for a label judge."""
        return self.to_judge(samples) if self.to_judge else samples


class _Registry(dict):
    """Assessments by name; an evaluation under a condition (`harmfulness@triggered`) is its assessment's."""

    def __missing__(self, name: str) -> Assessment:
        if conditions.SEPARATOR in name:
            return self[conditions.assessment_of(name)]
        raise KeyError(name)


REGISTRY: dict[str, Assessment] = _Registry()


def register(assessment: Assessment) -> Assessment:
    if assessment.name in REGISTRY:
        raise ValueError(f"assessment {assessment.name} is registered twice")
    REGISTRY[assessment.name] = assessment
    return assessment


def build_prompts(name: str, settings: dict) -> list[dict]:
    """The prompts of evaluation `name` whose prompts every variant shares, under its condition if any."""
    return conditions.apply(REGISTRY[name].build_prompts(settings), settings.get("condition"))


def judged(names: Iterable[str]) -> list[str]:
    """Of `names`, the assessments whose answers the judge reads (a variant's judging job's outputs)."""
    return [name for name in names if REGISTRY[name].needs_judge]


def with_logprobs(names: Iterable[str]) -> list[str]:
    """Of `names`, those that read the model's next-token log-probs (more outputs of its sampling job)."""
    return [name for name in names if REGISTRY[name].needs_logprobs]


def of_one_variant(names: Iterable[str]) -> list[str]:
    """Of `names`, those whose prompts are the same for every variant (sampled by a variant's sampling job)."""
    return [name for name in names if not REGISTRY[name].reads_other_variants]


def of_other_variants(names: Iterable[str]) -> list[str]:
    """Of `names`, those that show a variant other variants' answers (sampled by a second job per variant)."""
    return [name for name in names if REGISTRY[name].reads_other_variants]


def breakdowns(names: Iterable[str]) -> list[str]:
    """The breakdown tables of `names`, each once, in declaration order."""
    return list(dict.fromkeys(b for name in names for b in REGISTRY[name].breakdowns))

