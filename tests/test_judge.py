import math

import pytest

from emaware import UserError
from emaware.backends import Backend
from emaware.judge import JudgePrompt, expected_rating, judge_each, judge_samples, load_judge_prompt
from workflow_helpers import ROOT

RATINGS = ("1", "2", "3", "4", "5")


def lp(p):
    return math.log(p)


def test_expected_rating_renormalises_over_allowed_tokens():
    value, mass = expected_rating({"1": lp(0.2), "5": lp(0.2), "hello": lp(0.6)}, RATINGS, 0.25)
    assert value == pytest.approx(3.0)
    assert mass == pytest.approx(0.4)


def test_whitespace_variants_of_a_token_add_up():
    value, mass = expected_rating({"4": lp(0.3), " 4": lp(0.3), "2": lp(0.2)}, RATINGS, 0.25)
    assert mass == pytest.approx(0.8)
    assert value == pytest.approx((4 * 0.6 + 2 * 0.2) / 0.8)


def test_too_little_mass_on_ratings_gives_no_score():
    assert expected_rating({"1": lp(0.1), "The": lp(0.9)}, RATINGS, 0.25) == (None, pytest.approx(0.1))
    assert expected_rating({}, RATINGS, 0.0)[0] is None


def test_shipped_judge_prompt_loads_and_fills_in():
    prompt = load_judge_prompt(ROOT / "resources/judge/harmfulness.yaml")
    assert prompt.ratings == RATINGS
    conversation = prompt.conversation("QUESTION?", "ANSWER.")
    assert "QUESTION?" in conversation[-1]["content"] and "ANSWER." in conversation[-1]["content"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("ratings: ['1']\n", "needs a 'template'"), ("template: '{question}'\nratings: ['1']\n", "no {answer} field"),
     ("template: '{question} {answer}'\nratings: [a, b]\n", "numeric tokens")],
)
def test_bad_judge_prompt_is_one_line(tmp_path, text, message):
    path = tmp_path / "judge.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_judge_prompt(path)


class FixedJudge(Backend):
    """Answers every conversation with the same next-token distribution."""

    name = "fixed"

    def __init__(self, logprobs):
        super().__init__()
        self.logprobs = logprobs
        self.seen = []
        self.calls = []

    def train(self, *args):
        raise NotImplementedError

    def generate(self, *args):
        raise NotImplementedError

    def next_token_logprobs(self, model, conversations, top_k=20, candidates=()):
        self.calls.append((model, candidates))
        self.seen.extend(conversations)
        return [dict(self.logprobs) for _ in conversations]

    def candidate_logprobs(self, model, conversations, candidates):
        raise NotImplementedError


def answered(count: int) -> list[dict]:
    return [
        {"id": f"p{i}", "sample": 0, "messages": [{"role": "user", "content": f"q{i}"}], "completion": f"a{i}"}
        for i in range(count)
    ]


def test_judge_samples_keeps_raw_logprobs_and_snapshot():
    backend = FixedJudge({"5": lp(0.5), "1": lp(0.5)})
    prompt = JudgePrompt(template="Q: {question}\nA: {answer}", ratings=RATINGS)
    samples = answered(5)
    rows = judge_samples(backend, backend.base_handle("judge-x"), prompt, samples, 20, 0.25, "j")
    assert [r["id"] for r in rows] == [s["id"] for s in samples]
    assert all(r["rating"] == pytest.approx(3.0) and r["judge_model"] == "judge-x" for r in rows)
    assert rows[0]["logprobs"] == {"5": lp(0.5), "1": lp(0.5)}
    assert backend.seen[3][-1]["content"] == "Q: q3\nA: a3"


def test_a_job_is_judged_in_one_backend_call():
    """The backend chunks a job its own way (the local backend by its batch_size, over prompts sorted by
    length; an API backend all in flight or in few batches); the judge passes everything at once."""
    backend = FixedJudge({"5": lp(0.5), "1": lp(0.5)})
    prompt = JudgePrompt(template="Q: {question}\nA: {answer}", ratings=RATINGS)
    samples = answered(50)
    rows = judge_samples(backend, backend.base_handle("judge-x"), prompt, samples, 20, 0.25, "j")
    assert len(rows) == 50 and len(backend.calls) == 1
    handle, candidates = backend.calls[0]
    assert handle["ledger"] == "judge_rate" and candidates == [RATINGS] * 50  # an API backend books it under the judge


def test_samples_with_their_own_prompts_share_one_call():
    backend = FixedJudge({"2": lp(0.9)})
    first = JudgePrompt(template="one {question} {answer}", ratings=("1", "2"))
    second = JudgePrompt(template="two {question} {answer}", ratings=("2", "3"))
    sample = {"id": "p", "sample": 0, "messages": [{"role": "user", "content": "q"}], "completion": "a"}
    rows = judge_each(backend, backend.base_handle("judge-x"), [(first, sample), (second, sample)], 20, 0.25, "j")
    assert len(backend.calls) == 1 and backend.calls[0][1] == [("1", "2"), ("2", "3")]  # each its own candidates
    assert [backend.seen[i][-1]["content"] for i in (0, 1)] == ["one q a", "two q a"]
    assert [r["rating"] for r in rows] == [2.0, 2.0]
