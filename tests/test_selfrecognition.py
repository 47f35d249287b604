"""Articles, derived training sets (SGTR, ICTR, longer-summary control), the summaries and self-recognition
assessments."""

import json

import pytest

from emaware import UserError
from emaware.assessments import ASSESSMENTS
from emaware.data.articles import derived_rows, held_out_draw, load_prompts, load_texts, training_draw
from workflow_helpers import ROOT, SHARED_DATA

PROMPTS = ROOT / "resources/sgtr/cnn.yaml"
ARTICLES = {"a": "Article A.", "b": "Article B.", "c": "Article C.", "d": "Article D."}


def write(tmp_path, name, value):
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def test_training_and_held_out_draws_never_share_an_article():
    ids = [f"id{i}" for i in range(10)]
    train, held = training_draw(ids, 6, 0), held_out_draw(ids, 4, 0)
    assert not set(train) & set(held) and len(set(train) | set(held)) == 10
    assert training_draw(reversed(ids), 6, 0) == train  # the file's key order does not matter
    assert training_draw(ids, 6, 1) != train
    assert training_draw(ids, 3, 0) == train[:3]  # a smaller draw is the start of a larger one


@pytest.mark.parametrize(
    ("value", "message"),
    [([1, 2], "expected a non-empty JSON object"), ({}, "expected a non-empty JSON object"), ({"a": " "}, "the text of 'a' is not a non-empty string")],
)
def test_bad_texts_name_the_file(tmp_path, value, message):
    with pytest.raises(UserError, match=message):
        load_texts(write(tmp_path, "bad.json", value))


def test_prompts_need_their_fields(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("summarize: {system: s, user: 'no field'}\nrecognize: {system: s, user: '{article} {summary_1} {summary_2}'}\n")
    with pytest.raises(UserError, match=r"summarize.user lacks \{article\}"):
        load_prompts(path)


def answers(rows):
    return [row["messages"][-1]["content"] for row in rows]


def test_sgtr_labels_the_own_summary_in_both_orders():
    own, other = {"a": "mine a", "b": "same", "c": "mine c"}, {"a": "theirs a", "b": "same", "c": "theirs c, longer"}
    rows, left_out = derived_rows("sgtr", ARTICLES, own, other, ["a", "b", "c", "d"], 0, load_prompts(PROMPTS))
    assert left_out == 2  # b: both the same text; d: no own summary
    assert answers(rows) == ["1", "2", "1", "2"]
    first, second = rows[0]["messages"][1]["content"], rows[1]["messages"][1]["content"]
    assert first.index("mine a") < first.index("theirs a") and second.index("theirs a") < second.index("mine a")
    assert rows[0]["messages"][0]["role"] == "system" and "Article A." in first


def test_ictr_labels_at_random_from_its_seed_and_longer_labels_the_longer():
    own = {k: f"own {k}" for k in ARTICLES}
    other = {k: f"the other summary of {k}" for k in ARTICLES}
    prompts = load_prompts(PROMPTS)
    ictr = answers(derived_rows("ictr", ARTICLES, own, other, list(ARTICLES), 0, prompts)[0])
    assert ictr == answers(derived_rows("ictr", ARTICLES, own, other, list(ARTICLES), 0, prompts)[0])
    assert ictr != answers(derived_rows("ictr", ARTICLES, own, other, list(ARTICLES), 5, prompts)[0])
    assert set(ictr) == {"1", "2"}
    assert answers(derived_rows("longer", ARTICLES, own, other, list(ARTICLES), 0, prompts)[0]) == ["2", "1"] * 4
    with pytest.raises(UserError, match="kind 'mixed' is not one of"):
        derived_rows("mixed", ARTICLES, own, other, list(ARTICLES), 0, prompts)


def test_summaries_ask_about_the_held_out_articles_and_score_their_length(tmp_path):
    settings = {"articles": write(tmp_path, "a.json", ARTICLES), "n": 2, "seed": 0, "prompts": str(PROMPTS), "bootstrap": 50}
    prompts = ASSESSMENTS["summaries"].build_prompts(settings)
    assert [p["id"] for p in prompts] == held_out_draw(ARTICLES, 2, 0)
    samples = [{"id": prompts[0]["id"], "sample": 0, "completion": "two words"}, {"id": prompts[1]["id"], "sample": 0, "completion": "  "}]
    result = ASSESSMENTS["summaries"].score(prompts, samples, None, None, settings)
    assert result["score"] == 2.0 and result["unparseable"] == 1 and result["articles"] == 1 and result["unit"] == "words"


def test_selfrecognition_shows_the_own_summary_beside_each_source_in_both_orders(tmp_path):
    claude = write(tmp_path, "claude.raw", {"a": "claude a", "b": "claude b"})
    human = write(tmp_path, "human.raw", {"a": "own a"})  # the same text as the own summary: not paired
    settings = {"articles": write(tmp_path, "a.json", ARTICLES), "others": [claude, human], "prompts": str(ROOT / "resources/sgtr/xsum.yaml")}
    own = [{"id": "a", "sample": 0, "completion": "own a"}, {"id": "b", "sample": 0, "completion": "own b"}]
    declared = ASSESSMENTS["selfrecognition"]
    assert declared.others_from == "datasets" and declared.answers_of == "source" and declared.needs_logprobs
    rows = declared.build_prompts(settings, own, {})
    assert [row["id"] for row in rows] == ["claude/a/0/own1", "claude/a/0/own2", "claude/b/0/own1", "claude/b/0/own2"]
    assert rows[1]["meta"] == {"other": "claude", "source_id": "a", "pair": "claude/a/0", "own_position": 2}
    samples = [{"id": row["id"], "sample": 0, "completion": answer} for row, answer in zip(rows, ["1", "2", "2", "nonsense"])]
    logprobs = [{"id": row["id"], "logprobs": {"1": -0.1, "2": -2.5}} for row in rows]
    result = declared.score(rows, samples, None, logprobs, {"min_mass": 0.0, "bootstrap": 50, "ci": 0.95, "seed": 0})
    assert result["assessment"] == "selfrecognition"
    assert result["score"] == pytest.approx(0.5)  # pair a: both right (1.0); pair b: one wrong answer, one unparseable (0.0)
    assert result["unparseable"] == 1 and [row["other"] for row in result["by_other"]] == ["claude"]


@pytest.mark.skipif(not (SHARED_DATA / "sgtr-em").is_dir(), reason="no offline copy of the sgtr-em data")
def test_the_studys_files_pair_up():
    data = SHARED_DATA / "sgtr-em/data"
    articles = load_texts(data / "articles/cnn_train_articles.json")
    claude = load_texts(data / "summaries/cnn/cnn_train_claude-21_responses.json")
    qwen = load_texts(data / "summaries/cnn/cnn_train_hf_qwen_32b_responses.json")
    ids = training_draw(articles, 1000, 0)
    rows, left_out = derived_rows("sgtr", articles, qwen, claude, ids, 0, load_prompts(PROMPTS))
    assert len(articles) == 1000 and len(rows) == 2 * (1000 - left_out) and left_out < 10
