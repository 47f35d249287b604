"""The assessments, by name. Each module provides build_prompts, needs_judge, needs_logprobs and score;
modules that need the judge also provide to_judge(samples), those that need next-token logprobs
logprob_requests(prompts). `prompt_settings` and `score_settings` name the settings keys that
build_prompts and score read: only those reach the rules' params, so no other key reruns them.
Adding an assessment is one import and one entry."""

from . import harmfulness, intentions, morals, selfassessment

ASSESSMENTS = {
    "harmfulness": harmfulness,
    "intentions": intentions,
    "selfassessment": selfassessment,
    "morals": morals,
}

# The `by_<name>` breakdowns each assessment's score file has (one table each beside variants.tsv).
BREAKDOWNS = {
    "harmfulness": ("category",),
    "intentions": ("dimension",),
    "selfassessment": ("dimension", "format", "dimension_format"),
    "morals": ("foundation", "part"),
}
