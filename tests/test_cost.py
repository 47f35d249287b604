"""Token and dollar estimates, the budget, and the `python -m emaware.cost` table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emaware import UserError
from emaware.assessments import ASSESSMENTS
from emaware.config import load, variants
from emaware.cost import (
    BATCH_DISCOUNT,
    RULES,
    Budget,
    chat_tokens,
    count_tokens,
    find_price,
    plan,
    price_for,
    requests_estimate,
    training_estimate,
)
from emaware.data import subsample

PRICES = {
    "gpt-4.1": {"input": 2.0, "output": 8.0, "training": 25.0, "finetuned_input": 3.0, "finetuned_output": 12.0},
    "gpt-4.1-nano": {"input": 0.1, "output": 0.4, "training": 1.5},
}


def test_tokens_are_counted_roughly_like_the_api():
    assert count_tokens("") == 0
    assert 2 <= count_tokens("Hello, how are you today?") <= 8
    assert chat_tokens([{"role": "user", "content": ""}]) == 7  # per-message and reply-priming overhead


def test_a_model_uses_the_longest_matching_price_and_fine_tuned_rates():
    assert find_price("gpt-4.1-nano-2025-04-14", PRICES)["input"] == 0.1
    assert find_price("gpt-4.1-2025-04-14", PRICES)["input"] == 2.0
    assert find_price("ft:gpt-4.1-2025-04-14:org:mis:abc", PRICES) == {"input": 3.0, "output": 12.0, "training": 25.0}
    assert find_price("ft:gpt-4.1-nano-2025-04-14:org:mis:abc", PRICES)["input"] == 0.1  # no finetuned_* rate given
    assert find_price("gpt-4o", PRICES) is None
    with pytest.raises(UserError, match="no price for model 'gpt-4o' in config key backends.openai.prices"):
        price_for("gpt-4o", PRICES)


def test_training_costs_tokens_times_epochs():
    conversations = [[{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y" * 400}]] * 10
    one = training_estimate("gpt-4.1", conversations, 1, PRICES)
    three = training_estimate("gpt-4.1", conversations, 3, PRICES)
    assert three.input_tokens == 3 * one.input_tokens and three.usd == pytest.approx(3 * one.usd)
    assert one.usd == pytest.approx(one.input_tokens * 25.0 / 1e6)
    assert training_estimate("gpt-4.1", conversations, "auto", PRICES).input_tokens == three.input_tokens


def test_requests_count_every_sample_at_max_tokens_and_the_batch_discount():
    body = {"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "x" * 40}], "n": 10, "max_tokens": 600}
    direct = requests_estimate([body] * 4, PRICES, batch=False, rule="sample")
    assert direct.output_tokens == 4 * 10 * 600
    assert direct.usd == pytest.approx((direct.input_tokens * 0.1 + direct.output_tokens * 0.4) / 1e6)
    assert requests_estimate([body] * 4, PRICES, batch=True, rule="sample").usd == pytest.approx(
        direct.usd * BATCH_DISCOUNT
    )
    judged = requests_estimate([body], PRICES, False, "judge", unseen_input=600)
    assert judged.input_tokens == chat_tokens(body["messages"]) + 600


def test_the_budget_counts_what_was_spent():
    Budget(None).check(10**9, "anything")
    Budget(5.0, spent=lambda: 1.0).check(4.0, "sampling")
    with pytest.raises(UserError) as failure:
        Budget(5.0, spent=lambda: 1.0).check(4.5, "sampling")
    assert str(failure.value) == (
        "estimated cost $5.50 ($1.00 spent so far + $4.50 for sampling) exceeds budget $5.00 set in config key backends.openai.budget_usd"
    )


REPO = Path(__file__).resolve().parents[1]


def test_fine_tuning_is_counted_on_the_subsample_the_workflow_trains_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [
        {"messages": [{"role": "user", "content": "q" * 40 * (i + 1)}, {"role": "assistant", "content": "a"}]}
        for i in range(20)
    ]
    for name in ("bad", "good"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "seeds": [0],
        "sizes": {
            "nano": {"backend": "openai", "model": "gpt-4.1-nano"},
            "0.5b": {"backend": "local", "model": "Qwen/x"},
        },
        "domains": {"trivia": {"misaligned": "bad", "realigned": "good", "n": 5}},
        "active_domains": None,
        "datasets": {"bad": {"path": "bad.jsonl"}, "good": {"path": "good.jsonl"}},
        "data": {"mirror": None, "subsample_seed": 3},
        "training": {"openai": {"n_epochs": 2}},
        "sampling": {"max_tokens": 100},
        "judge": {"backend": "openai", "model": "gpt-4.1"},
        "assessments": {},
        "backends": {"openai": {"prices": PRICES}},
    }
    estimates = plan(config)
    assert [(e.rule, e.target) for e in estimates] == [
        ("finetune", "nano/trivia/misaligned/seed0"),
        ("finetune", "nano/trivia/realigned/seed0"),
    ]
    expected = 2 * sum(chat_tokens(r["messages"]) for r in subsample(rows, 5, 3))
    assert estimates[0].input_tokens == expected and estimates[0].usd == pytest.approx(expected * 1.5 / 1e6)


def openai_quickstart(tmp_path: Path, budget: float) -> Path:
    """The quickstart config with its first size and the judge on openai."""
    config = yaml.safe_load((REPO / "config" / "quickstart.yaml").read_text())
    first = next(iter(config["sizes"]))
    config["sizes"][first].update(backend="openai", model="gpt-4.1-nano")
    config["judge"].update(backend="openai", model="gpt-4.1")
    config["backends"]["openai"] = {"prices": PRICES, "budget_usd": budget}
    path = tmp_path / f"openai-{budget}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_plan_covers_every_paid_rule_of_the_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load(openai_quickstart(tmp_path, 100), "workflow/schemas/config.schema.yaml")
    estimates = plan(config)
    paid = [v for v in variants(config) if config["sizes"][v.size]["backend"] == "openai"]
    by_rule = {rule: [e for e in estimates if e.rule == rule] for rule in RULES}
    assert len(by_rule["finetune"]) == sum(v.stage != "base" for v in paid)
    assert len(by_rule["sample_generate"]) == len(paid) * len(config["assessments"])
    logprob_assessments = [a for a in config["assessments"] if ASSESSMENTS[a].needs_logprobs]
    assert len(by_rule["sample_logprobs"]) == len(paid) * len(logprob_assessments)
    judged = [a for a in config["assessments"] if ASSESSMENTS[a].needs_judge]
    assert len(by_rule["judge_rate"]) == len(list(variants(config))) * len(judged)  # the local size is judged too
    assert {e.model for e in by_rule["judge_rate"]} == {"gpt-4.1"}
    assert all(e.output_tokens == 0 or e.usd > 0 for e in estimates)


def test_plan_needs_a_local_copy_of_each_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load(openai_quickstart(tmp_path, 100), "workflow/schemas/config.schema.yaml")
    config["datasets"]["unfetched"] = {"url": "https://example.org/unfetched.jsonl"}
    next(iter(config["domains"].values()))["misaligned"] = "unfetched"
    with pytest.raises(UserError, match="dataset 'unfetched' has no local copy"):
        plan(config)


def test_the_cli_prints_a_table_without_a_key_and_fails_over_budget(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def cost(config: Path):
        command = [sys.executable, "-m", "emaware.cost", "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO)

    ok = cost(openai_quickstart(tmp_path, 100))
    assert ok.returncode == 0, ok.stderr
    for rule in RULES:
        assert f"total {rule}" in ok.stdout
    assert "budget (backends.openai.budget_usd): $100.00" in ok.stdout
    over = cost(openai_quickstart(tmp_path, 0.0001))
    assert over.returncode == 1 and over.stderr.count("\n") == 1 and "exceeds budget $0.00" in over.stderr
