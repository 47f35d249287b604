"""Summaries: every variant summarises the same held-out articles (the last `n` of the articles' seeded
order, so none of the articles a derived training set pairs while the counts add up to at most the file's;
emaware.data.articles), with the study's summarisation prompt (`prompts`: resources/sgtr/*.yaml).

The answers are what self-recognition shows the variant beside other sources' summaries. The score is
descriptive: the mean summary length in words (not 0–1), with a bootstrap CI over articles; a blank answer
is unparseable. The longer-summary control trains on length, so a change of it is worth seeing.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..data.articles import held_out_draw, load_prompts, load_texts, summary_rows
from .base import Assessment, register
from .common import OK, UNPARSEABLE, summarise


def build_prompts(settings: dict) -> list[dict]:
    """Settings: `articles` (file), `n`, `seed`, `prompts` (file)."""
    articles = load_texts(settings["articles"])
    return summary_rows(articles, held_out_draw(articles, settings["n"], settings["seed"]), load_prompts(settings["prompts"]))


def score(prompts: list[dict], samples: list[dict], judgments, logprobs, settings: dict) -> dict:
    """Mean words per summary (mean over articles), CI over articles; blank summaries are unparseable."""
    words: dict[str, list[float]] = defaultdict(list)
    counts: Counter = Counter()
    for sample in samples:
        length = len(sample["completion"].split())
        counts[OK if length else UNPARSEABLE] += 1
        if length:
            words[sample["id"]].append(float(length))
    result = summarise(words, counts, settings)
    result["articles"] = result.pop("prompts")
    return {"assessment": "summaries", "unit": "words", **result}


ASSESSMENT = register(
    Assessment(
        name="summaries",
        build_prompts=build_prompts,
        score=score,
        prompt_settings=("articles", "n", "seed", "prompts"),
        score_settings=("bootstrap", "ci"),
    )
)
