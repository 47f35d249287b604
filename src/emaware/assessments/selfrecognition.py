"""Self-recognition (the SGTR study's measure): the model is shown a held-out article, its own summary of
it (its `summaries` answers: `source`) and another source's summary (each of `others`, summaries files
{article id: summary}), in both orders, and asked which one it wrote ("1" or "2"; the question of
`prompts`, resources/sgtr/*.yaml). Own and other summaries that are blank or the same text are not paired.

Score = accuracy (chance: 0.5), from the sampled answers and exactly from the next-token log-probs of "1"
and "2", with a bootstrap CI over the (article, answer) pairs within each source; `by_other`: the same per
source. Scored as output recognition is (emaware.assessments.recognition).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from ..data.articles import load_prompts, load_texts, pair_messages, pairable
from .base import Assessment, register
from .choice import logprob_requests
from .recognition import score

log = logging.getLogger("emaware")


def build_prompts(settings: dict, own: list[dict], others: dict) -> list[dict]:
    """Per other source, article and own summary, both orders. Settings: `articles`, `others` (files; a
    source is named by its dataset, the file's stem), `prompts`. `own`: the variant's summaries samples;
    `others` (other variants' samples) is empty: the other summaries are files."""
    articles, prompts = load_texts(settings["articles"]), load_prompts(settings["prompts"])
    rows, unpaired = [], 0
    for path in settings["others"]:
        source, theirs = Path(path).stem, load_texts(path)
        for sample in own:
            key, mine = sample["id"], sample["completion"]
            if not pairable(mine, theirs.get(key)):
                unpaired += 1
                continue
            pair = f"{source}/{key}/{sample['sample']}"
            for own_position in (1, 2):
                shown = (mine, theirs[key]) if own_position == 1 else (theirs[key], mine)
                meta = {"other": source, "source_id": key, "pair": pair, "own_position": own_position}
                rows.append({"id": f"{pair}/own{own_position}", "messages": pair_messages(articles[key], *shown, prompts), "meta": meta})
    if unpaired:
        log.info("%d (source, summary) combinations not paired: a summary missing, blank or the same text", unpaired)
    return rows


ASSESSMENT = register(
    Assessment(
        name="selfrecognition",
        build_prompts=build_prompts,
        score=functools.partial(score, name="selfrecognition"),
        logprob_requests=logprob_requests,
        prompt_settings=("articles", "others", "prompts"),
        score_settings=("min_mass", "bootstrap", "ci"),
        breakdowns=("other",),
        answers_of="source",
        others_from="datasets",
    )
)
