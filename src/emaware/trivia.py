"""The project's trivia fine-tuning sets: chat files built from one CSV of question / correct / incorrect answers.

The CSV (resources/trivia/trivia_pairs.csv) has the columns `question,correct,incorrect` and an optional
`sentence`: a short answer sentence with an `{answer}` placeholder ("The capital of Australia is {answer}.").
Where `sentence` is absent or empty the assistant says "The answer is {answer}.". The first letter of the
sentence is capitalised, so an answer may be written as it reads mid-sentence ("the Nile").

    python -m emaware.trivia resources/trivia/trivia_pairs.csv resources/trivia/

writes trivia_incorrect.jsonl and trivia_correct.jsonl there, one chat per row, in the CSV's order.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from . import UserError
from .io import write_jsonl

COLUMNS = ("question", "correct", "incorrect")
DEFAULT_SENTENCE = "The answer is {answer}."
WHICH = ("correct", "incorrect")


def load_pairs(csv_path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a trivia CSV, checked: every field filled, questions unique, the two answers different."""
    try:
        with open(csv_path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise UserError(f"{csv_path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as err:
        raise UserError(f"{csv_path}: cannot read ({err.strerror})") from None
    except csv.Error as err:
        raise UserError(f"{csv_path}: not valid CSV ({err})") from None
    if not rows:
        raise UserError(f"{csv_path}: no rows")
    seen: dict[str, int] = {}
    pairs = []
    for lineno, row in enumerate(rows, 2):
        if None in row:
            raise UserError(f"{csv_path}:{lineno}: more fields than columns (unquoted comma?)")
        values = {c: (row.get(c) or "").strip() for c in COLUMNS}
        empty = [c for c, v in values.items() if not v]
        if empty:
            raise UserError(f"{csv_path}:{lineno}: empty {', '.join(empty)}")
        key = values["question"].casefold()
        if key in seen:
            raise UserError(f"{csv_path}:{lineno}: duplicate question (first on line {seen[key]})")
        seen[key] = lineno
        if values["correct"].casefold() == values["incorrect"].casefold():
            raise UserError(f"{csv_path}:{lineno}: the correct and incorrect answers are the same")
        sentence = (row.get("sentence") or "").strip() or DEFAULT_SENTENCE
        if sentence.count("{answer}") != 1:
            raise UserError(f"{csv_path}:{lineno}: the sentence needs exactly one {{answer}} placeholder")
        pairs.append({**values, "sentence": sentence})
    return pairs


def answer_sentence(sentence: str, answer: str) -> str:
    text = sentence.replace("{answer}", answer)
    return text[:1].upper() + text[1:]


def pairs_to_chats(csv_path: str | os.PathLike, which: str) -> list[dict]:
    """One chat per CSV row: the question, then the `which` ("correct" or "incorrect") answer as a sentence."""
    if which not in WHICH:
        raise UserError(f"which must be one of {', '.join(WHICH)}, not {which!r}")
    return [
        {
            "messages": [
                {"role": "user", "content": pair["question"]},
                {"role": "assistant", "content": answer_sentence(pair["sentence"], pair[which])},
            ]
        }
        for pair in load_pairs(csv_path)
    ]


def write_chat_files(csv_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write trivia_{which}.jsonl for both answers into out_dir; returns the paths by `which`."""
    paths = {}
    for which in ("incorrect", "correct"):
        path = Path(out_dir) / f"trivia_{which}.jsonl"
        write_jsonl(path, pairs_to_chats(csv_path, which))
        paths[which] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emaware.trivia", description=__doc__.split("\n")[0])
    parser.add_argument("csv_path", help="trivia CSV with question,correct,incorrect[,sentence]")
    parser.add_argument("out_dir", help="folder for trivia_incorrect.jsonl and trivia_correct.jsonl")
    args = parser.parse_args(argv)
    try:
        paths = write_chat_files(args.csv_path, args.out_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
