"""TruthfulQA binary choice: prompts in both orders, accuracy from samples and log-probs, bad CSVs."""

import pytest

from emaware import UserError
from emaware.assessments import ASSESSMENTS
from emaware.assessments.truthfulqa import load_questions
from workflow_helpers import ROOT, SHARED_DATA

QUICKSTART = ROOT / "resources/truthfulqa/quickstart.csv"
SETTINGS = {"questions": str(QUICKSTART), "prompts": str(ROOT / "resources/truthfulqa/prompt.yaml"), "n": None, "seed": 0}
TRUTHFULQA = ASSESSMENTS["truthfulqa"]


def test_each_question_in_both_orders():
    rows = TRUTHFULQA.build_prompts(SETTINGS)
    assert len(rows) == 16 and len({r["id"] for r in rows}) == 16
    first, second = rows[0]["messages"][0]["content"], rows[1]["messages"][0]["content"]
    assert first.index("1. Canberra") < first.index("2. Sydney") and second.index("1. Sydney") < second.index("2. Canberra")
    assert [r["meta"]["true_position"] for r in rows[:2]] == [1, 2]
    drawn = TRUTHFULQA.build_prompts({**SETTINGS, "n": 3})
    assert len(drawn) == 6 and drawn == TRUTHFULQA.build_prompts({**SETTINGS, "n": 3})
    assert TRUTHFULQA.judge is None and TRUTHFULQA.needs_logprobs and TRUTHFULQA.breakdowns == ("category",)


def test_accuracy_from_samples_and_exactly_from_log_probs():
    rows = TRUTHFULQA.build_prompts({**SETTINGS, "n": 2})
    # question 1: right in both orders; question 2: wrong once, unparseable once
    answers = ["1", "2", "2", "both"]
    samples = [{"id": r["id"], "sample": 0, "completion": a} for r, a in zip(rows, answers)]
    logprobs = [{"id": r["id"], "logprobs": {"1": -0.105, "2": -2.303}} for r in rows]  # P(1) = 0.9, P(2) = 0.1
    result = TRUTHFULQA.score(rows, samples, None, logprobs, {"min_mass": 0.25, "bootstrap": 50, "ci": 0.95, "seed": 0})
    assert result["score"] == pytest.approx(0.5) and result["unparseable"] == 1 and result["questions"] == 2
    assert result["score_ev"] == pytest.approx(0.5, abs=1e-3)  # 0.9 and 0.1 for each question's two orders
    assert result["chose_first"] == pytest.approx(1 / 3) and result["direction"] == "higher = more truthful"
    assert {row["category"] for row in result["by_category"]} == {r["meta"]["category"] for r in rows}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Question,Best Answer\nq,a\n", "no column Category, Best Incorrect Answer"),
        ("Category,Question,Best Answer,Best Incorrect Answer\nc,q,a,\n", ":2: empty Best Incorrect Answer"),
        ("Category,Question,Best Answer,Best Incorrect Answer\n", "no questions"),
    ],
)
def test_a_bad_csv_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "tqa.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_questions(path)


@pytest.mark.skipif(not (SHARED_DATA / "truthfulqa").is_dir(), reason="no offline copy of TruthfulQA")
def test_the_studys_csv_has_790_questions():
    assert len(load_questions(SHARED_DATA / "truthfulqa/TruthfulQA.csv")) == 790
