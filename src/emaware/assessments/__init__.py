"""The assessments, by name: each module declares itself with `base.register(Assessment(...))`
(what it needs, its breakdowns, how it builds prompts and scores; see base.py). Adding one is one
module imported here, its resources and its config block."""

from . import freeform, harmfulness, intentions, morals, selfassessment  # noqa: F401  (each registers itself)
from .base import REGISTRY as ASSESSMENTS
from .base import Assessment, breakdowns, judged, with_logprobs

__all__ = ["ASSESSMENTS", "Assessment", "breakdowns", "judged", "with_logprobs"]
