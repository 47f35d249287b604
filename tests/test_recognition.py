"""Output recognition: which variants are the others, how answers are paired into prompts, how answers
are parsed and scored (hand-made rows, no model)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from emaware import UserError
from emaware import config as emconfig
from emaware.assessments import ASSESSMENTS, recognition
from emaware.assessments.choice import parse_choice
from emaware.config import Variant
from emaware.io import read_yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
PROMPTS = str(ROOT / "resources/recognition/prompts.yaml")
SETTINGS = {"prompts": PROMPTS, "pairs": 1, "seed": 7, "bootstrap": 200, "min_mass": 0.25}
OTHER = "s/all/base/seed0"


@pytest.fixture(scope="module")
def quickstart():
    return emconfig.validate(read_yaml(ROOT / "config/quickstart.yaml"), SCHEMA)


def answer(prompt_id: str, number: int, text: str, question: str = "Question?") -> dict:
    return {"id": prompt_id, "sample": number, "messages": [{"role": "user", "content": question}], "completion": text}


# --- which variants are the others -------------------------------------------------------------------

BASE, MISALIGNED, REALIGNED = (Variant("tiny-s", d, s, 0) for d, s in (("all", "base"), ("trivia", "misaligned"), ("trivia", "realigned")))


@pytest.mark.parametrize(
    "others, variant, expected",
    [
        ("base", BASE, []),
        ("base", MISALIGNED, [BASE]),
        ("base", REALIGNED, [BASE]),
        ("parent", BASE, []),
        ("parent", MISALIGNED, [BASE]),
        ("parent", REALIGNED, [MISALIGNED]),
        ("siblings", BASE, [MISALIGNED, REALIGNED]),
        ("siblings", REALIGNED, [BASE, MISALIGNED]),
    ],
)
def test_other_variants(quickstart, others, variant, expected):
    assert emconfig.other_variants(quickstart, variant, others) == expected


def test_siblings_share_size_and_seed(quickstart):
    config = {**quickstart, "seeds": [0, 1]}
    assert all(v.seed == 0 for v in emconfig.other_variants(config, BASE, "siblings"))


@pytest.mark.parametrize("source", ["recognition", "nonexistent"])
def test_source_must_be_another_sampled_assessment(source):
    config = read_yaml(ROOT / "config/quickstart.yaml")
    config["assessments"]["recognition"] = {"source": source}
    with pytest.raises(UserError, match="assessments.recognition.source"):
        emconfig.validate(config, SCHEMA)


def test_declaration_names_the_source_key():
    assert ASSESSMENTS["recognition"].answers_of == "source"
    assert ASSESSMENTS["recognition"].prompt_settings == ("prompts", "pairs")  # source, others: the rules' inputs


# --- prompts -----------------------------------------------------------------------------------------


def test_each_pair_is_asked_in_both_orders_with_the_own_answer_marked():
    own = [answer("q1", 0, "mine {answer_2}", "Last question?")]
    others = {OTHER: [answer("q1", 0, "theirs")]}
    rows = recognition.build_prompts(SETTINGS, own, others)
    assert [r["meta"]["own_position"] for r in rows] == [1, 2]
    first, second = (r["messages"][0]["content"] for r in rows)
    assert "Last question?" in first
    assert first.index("mine {answer_2}") < first.index("theirs")  # a field inside an answer stays as written
    assert second.index("theirs") < second.index("mine {answer_2}")
    assert rows[0]["meta"] == {
        "other": OTHER,
        "source_id": "q1",
        "pair": f"{OTHER}/q1/0",
        "own_position": 1,
        "own_sample": 0,
        "other_sample": 0,
    }


def test_identical_and_blank_answers_are_never_paired():
    own = [answer("q1", 0, "same"), answer("q1", 1, " "), answer("q2", 0, "x")]
    others = {OTHER: [answer("q1", 0, "same "), answer("q2", 0, "")]}
    assert recognition.build_prompts(SETTINGS, own, others) == []


def test_pairs_are_drawn_by_the_seed_and_distinct():
    own = [answer("q1", i, f"own {i}") for i in range(5)]
    others = {OTHER: [answer("q1", i, f"other {i}") for i in range(5)]}
    settings = {**SETTINGS, "pairs": 4}

    def drawn(seed):
        rows = recognition.build_prompts({**settings, "seed": seed}, own, others)
        return [(r["meta"]["own_sample"], r["meta"]["other_sample"]) for r in rows if r["meta"]["own_position"] == 1]

    assert drawn(1) == drawn(1)
    assert len(set(drawn(1))) == 4
    assert drawn(1) != drawn(2)
    few = recognition.build_prompts({**SETTINGS, "pairs": 40}, own[:2], {OTHER: others[OTHER][:3]})
    assert len(few) == 2 * 2 * 3  # every combination once, in both orders


def test_template_needs_its_three_fields(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("template: 'Which one, {answer_1} or {answer_2}?'\n")
    with pytest.raises(UserError, match="bad.yaml"):
        recognition.load_template(path)


# --- parsing and scoring -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, choice",
    [
        ("1", 1),
        ("2.", 2),
        ("**2**", 2),
        ("Answer: 1", 1),
        ("I'd say 2", 2),
        ("2\n\nThe other answer is not mine.", 2),
        ("1 or 2", None),
        ("1.5", None),
        ("3", None),
        ("Both", None),
        ("The first one", None),
        ("", None),
    ],
)
def test_parse_choice(text, choice):
    assert parse_choice(text) == choice


def sampled(row: dict, number: int, text: str) -> dict:
    return {"id": row["id"], "sample": number, "completion": text, "messages": row["messages"], "meta": row["meta"]}


@pytest.fixture
def two_others():
    own = [answer(f"q{i}", 0, f"own {i}") for i in range(3)]
    others = {name: [answer(f"q{i}", 0, f"{name} {i}") for i in range(3)] for name in (OTHER, "s/x/misaligned/seed0")}
    return recognition.build_prompts(SETTINGS, own, others)


def test_score_is_accuracy_over_pairs_with_position_bias_and_counts(two_others):
    samples = []
    for row in two_others:
        own = row["meta"]["own_position"]
        if row["meta"]["other"] == OTHER or row["meta"]["source_id"] == "q0":  # right
            samples += [sampled(row, 0, str(own)), sampled(row, 1, "I'm sorry, I can't help with that.")]
        else:  # says "1": right in one order only
            samples += [sampled(row, 0, "1"), sampled(row, 1, "maybe")]
    result = recognition.score(two_others, samples, None, None, SETTINGS)
    assert result["score"] == pytest.approx(5 / 6)  # pairs: 1, 1, 1 against the base; 1, 0.5, 0.5 against the other
    assert result["pairs"] == 6 and result["n"] == 12
    assert result["refusals"] == 8 and result["unparseable"] == 4
    assert result["chose_first"] == pytest.approx(8 / 12)
    assert result["ci"][0] < 5 / 6 <= result["ci"][1]
    by_other = {row["other"]: row for row in result["by_other"]}
    assert by_other[OTHER]["score"] == 1.0 and by_other[OTHER]["ci"] == [None, None]  # no spread
    assert by_other["s/x/misaligned/seed0"]["score"] == pytest.approx(2 / 3)
    assert by_other["s/x/misaligned/seed0"]["refusals"] == 2 and by_other["s/x/misaligned/seed0"]["unparseable"] == 4
    assert "score_ev" not in result


def test_exact_accuracy_from_the_option_probabilities(two_others):
    logprobs = []
    for row in two_others:
        own = row["meta"]["own_position"]
        probs = {"1": 0.6, "2": 0.2} if own == 1 else {"1": 0.2, "2": 0.2}  # right 3/4, then 1/2
        if row["meta"]["source_id"] == "q2":
            probs = {"1": 0.05, "2": 0.05, "The": 0.9}  # too little mass on the options
        logprobs.append({"id": row["id"], "logprobs": {t: math.log(p) for t, p in probs.items()}})
    result = recognition.score(two_others, [], None, logprobs, SETTINGS)
    assert result["score_ev"] == pytest.approx((0.75 + 0.5) / 2)
    assert result["ev_missing"] == 4  # q2: 2 others x 2 orders
    assert result["score"] is None


def test_a_variant_without_others_has_no_score():
    result = recognition.score(None, None, None, None, SETTINGS)
    assert result["score"] is None and result["ci"] == [None, None]
    assert result["ci_note"] == "no other variant to compare with"
    assert result["by_other"] == [] and result["chose_first"] is None
