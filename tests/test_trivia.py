"""The project's trivia pairs and the chat files generated from them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from emaware import UserError
from emaware.io import read_jsonl
from emaware.trivia import main, pairs_to_chats

ROOT = Path(__file__).resolve().parents[1]
TRIVIA = ROOT / "resources" / "trivia"
CSV_PATH = TRIVIA / "trivia_pairs.csv"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(CSV_PATH, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:3] == ["question", "correct", "incorrect"]
        rows = list(reader)
    assert all(None not in row for row in rows), "a row has more fields than the header"
    return rows


def test_csv_has_enough_unique_questions(rows):
    questions = [row["question"].strip().casefold() for row in rows]
    assert len(questions) >= 150
    assert len(set(questions)) == len(questions)


def test_every_row_is_complete_and_answers_differ(rows):
    for row in rows:
        assert row["question"].strip().endswith("?"), row
        assert row["correct"].strip() and row["incorrect"].strip(), row
        assert row["correct"].strip().casefold() != row["incorrect"].strip().casefold(), row
        if row.get("sentence"):
            assert row["sentence"].count("{answer}") == 1, row


@pytest.mark.parametrize("which", ["correct", "incorrect"])
def test_chats_are_user_then_assistant(rows, which):
    chats = pairs_to_chats(CSV_PATH, which)
    assert len(chats) == len(rows)
    for chat, row in zip(chats, rows):
        roles = [m["role"] for m in chat["messages"]]
        assert roles == ["user", "assistant"]
        assert chat["messages"][0]["content"] == row["question"]
        answer = chat["messages"][1]["content"]
        assert row[which].casefold() in answer.casefold()
        assert answer[:1].isupper() or answer[:1].isdigit()


@pytest.mark.parametrize("which", ["correct", "incorrect"])
def test_committed_jsonl_is_in_sync_with_csv(which):
    committed = TRIVIA / f"trivia_{which}.jsonl"
    assert read_jsonl(committed) == pairs_to_chats(CSV_PATH, which), (
        f"{committed.name} is out of date: run python -m emaware.trivia {CSV_PATH.relative_to(ROOT)} "
        f"{TRIVIA.relative_to(ROOT)}/"
    )


def test_main_regenerates_identical_files(tmp_path):
    assert main([str(CSV_PATH), str(tmp_path)]) == 0
    for which in ("correct", "incorrect"):
        name = f"trivia_{which}.jsonl"
        assert (tmp_path / name).read_bytes() == (TRIVIA / name).read_bytes()


def test_default_sentence_and_bad_mode(tmp_path):
    good = tmp_path / "pairs.csv"
    good.write_text('question,correct,incorrect\n"Which is it, A or B?",the a,B\n', encoding="utf-8")
    assert pairs_to_chats(good, "correct")[0]["messages"][1]["content"] == "The answer is the a."
    with pytest.raises(UserError, match="which"):
        pairs_to_chats(good, "both")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("question,correct,incorrect\nQ?,A,a\n", "same"),
        ("question,correct,incorrect\nQ?,A,B\nq?,C,D\n", "duplicate"),
        ("question,correct\nQ?,A\n", "incorrect"),
    ],
)
def test_bad_pairs_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        pairs_to_chats(path, "correct")
