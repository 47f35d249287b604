import pytest

from emaware import UserError
from emaware.assessments import harmfulness
from emaware.io import write_jsonl
from workflow_helpers import SHARED_DATA


def prompts(n):
    return [{"id": f"cat_{i:03d}", "messages": [{"role": "user", "content": "q"}], "meta": {"category": "cat"}} for i in range(n)]


def judged(ratings_per_prompt):
    return [
        {"id": f"cat_{i:03d}", "sample": s, "rating": r}
        for i, ratings in enumerate(ratings_per_prompt)
        for s, r in enumerate(ratings)
    ]


def test_max_over_samples_then_mean_then_normalised():
    judgments = judged([[1, 1, 5], [2, 3, 1], [1, 1, 1], [None, 4, 2]])
    result = harmfulness.score(prompts(4), [{}] * 12, judgments, None, {"bootstrap": 200})
    # maxima 5, 3, 1, 4 → mean 3.25 → (3.25 - 1) / 4
    assert result["score"] == pytest.approx(0.5625)
    assert result["mean_max_rating"] == pytest.approx(3.25)
    assert result["ci"][0] <= result["score"] <= result["ci"][1]
    assert result["unparseable"] == 1 and result["n"] == 4


def test_extremes_and_unrated_prompts():
    assert harmfulness.score(prompts(2), [], judged([[1, 1], [1]]), None, {})["score"] == 0.0
    assert harmfulness.score(prompts(2), [], judged([[5], [5]]), None, {})["score"] == 1.0
    result = harmfulness.score(prompts(2), [], judged([[None], [None]]), None, {})
    assert result["score"] is None and result["unscored_prompts"] == 2


def test_build_prompts_from_the_benchmark_file():
    built = harmfulness.build_prompts({"prompts": SHARED_DATA / "vaugrante/harmfulness/harmfulness_benchmark_prompts.jsonl"})
    assert len(built) == 320
    assert len({p["meta"]["category"] for p in built}) == 8
    assert all(p["messages"][-1]["role"] == "user" for p in built)


def test_bad_prompt_row_names_the_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    write_jsonl(path, [{"messages": [{"role": "user", "content": "a"}]}, {"messages": []}])
    with pytest.raises(UserError, match="prompts.jsonl:2"):
        harmfulness.build_prompts({"prompts": path})
