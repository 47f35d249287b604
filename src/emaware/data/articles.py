"""Articles and their summaries for self-recognition (the SGTR study): which articles are drawn, how a
model is asked to summarise one, and the pairwise question "which of these two summaries did you write?",
as training rows (a derived set: SGTR, ICTR or the longer-summary control) or as prompts.

Articles and summaries are JSON objects {article id: text} (github.com/atagade/sgtr-em's files). The
articles of a file are put in one seeded order: a derived set trains on the first `n`, the self-recognition
measure asks about the last `n`, so the two never share an article while their counts add up to at most
the file's and their seeds agree.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from .. import UserError
from ..io import read_json, read_yaml
from ..seeds import derive_seed

KINDS = ("sgtr", "ictr", "longer")
ANSWERS = ("1", "2")


def load_texts(path: str | Path) -> dict[str, str]:
    """An articles or summaries file: {id: text}, every text a non-empty string."""
    texts = read_json(path)
    if not isinstance(texts, dict) or not texts:
        raise UserError(f"{path}: expected a non-empty JSON object {{id: text}}")
    for key, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}: the text of {key!r} is not a non-empty string")
    return texts


def load_prompts(path: str | Path) -> dict[str, dict[str, str]]:
    """The summarisation and recognition prompts (resources/sgtr/*.yaml): `summarize` {system, user with
    {article}}, `recognize` {system, user with {article}, {summary_1}, {summary_2}}."""
    spec = read_yaml(path, required=("summarize", "recognize"))
    fields = {"summarize": ("{article}",), "recognize": ("{article}", "{summary_1}", "{summary_2}")}
    for part, needed in fields.items():
        block = spec[part]
        if not isinstance(block, dict) or not all(isinstance(block.get(k), str) for k in ("system", "user")):
            raise UserError(f"{path}: '{part}' needs the texts system and user")
        missing = [field for field in needed if field not in block["user"]]
        if missing:
            raise UserError(f"{path}: {part}.user lacks {', '.join(missing)}")
    return {part: {k: spec[part][k] for k in ("system", "user")} for part in fields}


def ordered(ids, seed: int) -> list[str]:
    """The article ids in the draw's seeded order (independent of the file's key order)."""
    order = sorted(ids)
    random.Random(derive_seed("articles", seed)).shuffle(order)
    return order


def training_draw(ids, n: int, seed: int) -> list[str]:
    """The articles a derived set pairs: the first `n` of the seeded order."""
    return ordered(ids, seed)[:n]


def held_out_draw(ids, n: int, seed: int) -> list[str]:
    """The articles the self-recognition measure asks about: the last `n` of the seeded order."""
    order = ordered(ids, seed)
    return order[max(0, len(order) - n) :]


def _fill(template: str, **fields: str) -> str:
    """`template` with its fields filled in one pass, so a text containing "{summary_2}" stays as written."""
    return re.sub("|".join(re.escape("{" + key + "}") for key in fields), lambda match: fields[match[0][1:-1]], template)


def summary_rows(articles: dict[str, str], ids: list[str], prompts: dict) -> list[dict]:
    """Prompt rows asking for a summary of each article: {"id", "messages", "meta": {"article"}}."""
    ask = prompts["summarize"]
    return [
        {
            "id": key,
            "messages": [{"role": "system", "content": ask["system"]}, {"role": "user", "content": _fill(ask["user"], article=articles[key])}],
            "meta": {"article": key},
        }
        for key in ids
    ]


def pair_messages(article: str, first: str, second: str, prompts: dict) -> list[dict]:
    """The question "which of the two summaries did you write?" with `first` as summary 1."""
    ask = prompts["recognize"]
    return [
        {"role": "system", "content": ask["system"]},
        {"role": "user", "content": _fill(ask["user"], article=article, summary_1=first, summary_2=second)},
    ]


def pairable(own: str | None, other: str | None) -> bool:
    """Two summaries that can be told apart: both written (not blank) and not the same text."""
    return bool(own and own.strip() and other and other.strip() and own.strip() != other.strip())


def derived_rows(kind: str, articles: dict, own: dict, other: dict, ids: list[str], seed: int, prompts: dict) -> tuple[list[dict], int]:
    """A derived training set and how many articles were left out: for each article of `ids` whose own and
    other summaries are pairable, both orders (own first, own second), answered with the position of the own
    summary (sgtr), a random position drawn with `seed` (ictr) or the longer summary's (longer; articles whose
    two summaries are equally long are left out)."""
    if kind not in KINDS:
        raise UserError(f"derived set kind {kind!r} is not one of {', '.join(KINDS)}")
    rng = random.Random(derive_seed("ictr", seed))
    rows, left_out = [], 0
    for key in ids:
        mine, theirs = own.get(key), other.get(key)
        if not pairable(mine, theirs) or (kind == "longer" and len(mine) == len(theirs)):
            left_out += 1
            continue
        for shown in ((mine, theirs), (theirs, mine)):
            if kind == "sgtr":
                answer = ANSWERS[shown.index(mine)]
            elif kind == "ictr":
                answer = rng.choice(ANSWERS)
            else:
                answer = ANSWERS[0] if len(shown[0]) > len(shown[1]) else ANSWERS[1]
            messages = pair_messages(articles[key], *shown, prompts)
            rows.append({"messages": [*messages, {"role": "assistant", "content": answer}]})
    return rows, left_out
