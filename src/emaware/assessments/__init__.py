"""The assessments, by name: each module declares itself with `base.register(Assessment(...))`
(what it needs, its breakdowns, how it builds prompts and scores; see base.py). Adding one is one
module imported here, its resources and its config block."""

from . import description, freeform, harmfulness, intentions, morals, prediction, recognition, selfassessment, selfrecognition, summaries, truthfulqa  # noqa: F401  (each registers itself)
from .base import REGISTRY as ASSESSMENTS
from .base import Assessment, breakdowns, build_prompts, judged, of_one_variant, of_other_variants, with_logprobs

__all__ = ["ASSESSMENTS", "Assessment", "breakdowns", "build_prompts", "judged", "of_one_variant", "of_other_variants", "with_logprobs"]
