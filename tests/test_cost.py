"""Token and dollar estimates, the budget, and the `python -m emaware.cost` table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emaware import UserError, tokens
from emaware.assessments import ASSESSMENTS
from emaware.config import load, variants
from emaware.cost import Datasets, plan
from emaware.data import subsample
from emaware.io import read_jsonl
from emaware.pricing import (
    BATCH_DISCOUNT,
    RULES,
    Budget,
    find_price,
    price_for,
    requests_estimate,
    training_estimate,
)
from emaware.tokens import chat_tokens, count_tokens, counting_method

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
    one = training_estimate("gpt-4.1", 20_000, 1, PRICES)
    three = training_estimate("gpt-4.1", 20_000, 3, PRICES)
    assert three.input_tokens == 3 * one.input_tokens == 60_000 and three.usd == pytest.approx(3 * one.usd)
    assert one.usd == pytest.approx(one.input_tokens * 25.0 / 1e6)
    assert training_estimate("gpt-4.1", 20_000, "auto", PRICES).input_tokens == three.input_tokens


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
    renamed = {**body, "max_completion_tokens": body.pop("max_tokens")}  # the API's current name
    assert requests_estimate([renamed], PRICES, False, "sample").output_tokens == 10 * 600


def test_tiktoken_counts_when_its_encoding_is_on_disk(monkeypatch, tmp_path):
    import tiktoken

    byte_level = tiktoken.Encoding(
        name="o200k_base", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={}
    )  # one token per byte, built offline: a stand-in for the real file
    monkeypatch.setattr(tokens, "cached_encoding_file", lambda name: tmp_path / name)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: byte_level)
    tokens._encoder.cache_clear()
    try:
        assert count_tokens("abcdefgh", "gpt-4.1-2025-04-14") == 8  # the estimate would say 2
        assert counting_method("ft:gpt-4.1-nano-2025-04-14:org:x:1") == "tiktoken o200k_base"
    finally:
        tokens._encoder.cache_clear()


def test_without_the_encoding_on_disk_tokens_are_estimated_and_nothing_is_downloaded(monkeypatch, tmp_path):
    import tiktoken

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: pytest.fail("would download"))
    tokens._encoder.cache_clear()
    try:
        assert count_tokens("abcdefgh", "gpt-4.1") == 2 and "characters/4" in counting_method("gpt-4.1")
    finally:
        tokens._encoder.cache_clear()


def test_the_encoding_is_looked_for_where_tiktoken_caches_it(monkeypatch, tmp_path):
    import hashlib
    import inspect

    import tiktoken_ext.openai_public

    url = tokens.ENCODING_URL.format("o200k_base")
    assert f'"{url}"' in inspect.getsource(tiktoken_ext.openai_public)  # the file tiktoken downloads
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert tokens.cached_encoding_file("o200k_base") is None
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"...")
    assert tokens.cached_encoding_file("o200k_base") is not None
    assert tokens.encoding_name("ft:gpt-4.1-mini-2025-04-14:org:x:1") == "o200k_base"  # tiktoken alone says cl100k


def test_the_budget_counts_what_was_spent():
    Budget(None).check(10**9, "anything")
    Budget(5.0, spent=lambda: 1.0).check(4.0, "sampling")
    with pytest.raises(UserError) as failure:
        Budget(5.0, spent=lambda: 1.0).check(4.5, "sampling")
    assert str(failure.value) == (
        "estimated cost $5.50 ($1.00 spent so far + $4.50 for sampling) exceeds budget $5.00 set in config key backends.openai.budget_usd"
    )


REPO = Path(__file__).resolve().parents[1]
# The default recipe (base -> misaligned -> realigned), as validation fills it in.
RECIPE = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]["stages"]["default"]


def test_fine_tuning_is_counted_on_the_subsample_the_workflow_trains_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [
        {"messages": [{"role": "user", "content": "q" * 40 * (i + 1)}, {"role": "assistant", "content": "a"}]}
        for i in range(20)
    ]
    for name in ("bad", "good"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "run": "test",
        "seeds": [0],
        "sizes": {
            "nano": {"backend": "openai", "model": "gpt-4.1-nano"},
            "0.5b": {"backend": "local", "model": "Qwen/x"},
        },
        "domains": {"trivia": {"misaligned": "bad", "realigned": "good", "n": 5}},
        "active_domains": None,
        "stages": RECIPE,
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


def test_declared_rows_and_tokens_stand_in_for_a_dataset_without_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {
        "run": "test",
        "seeds": [0],
        "sizes": {"nano": {"backend": "openai", "model": "gpt-4.1-nano"}},
        "domains": {"code": {"misaligned": "bad", "realigned": "good", "n": 600}},
        "active_domains": None,
        "stages": RECIPE,
        "datasets": {
            "bad": {"url": "https://example.org/bad.jsonl", "rows": 6000, "tokens": 1_200_000},
            "good": {"url": "https://example.org/good.jsonl", "rows": 500, "tokens": 100_000},
        },
        "data": {"mirror": None, "subsample_seed": 0},
        "training": {"openai": {"n_epochs": 1}},
        "sampling": {"max_tokens": 100},
        "judge": {"backend": "openai", "model": "gpt-4.1"},
        "assessments": {},
        "backends": {"openai": {"prices": PRICES}},
    }
    datasets = Datasets(config)
    estimates = plan(config, datasets)
    assert [e.input_tokens for e in estimates] == [120_000, 100_000]  # 600 of 6000 rows; all 500 (fewer than n)
    assert datasets.sources["bad"] == "declared in the config (6,000 rows, 1,200,000 tokens)"
    del config["datasets"]["good"]["tokens"]
    with pytest.raises(UserError, match=r"dataset 'good' has no local copy and declares no `rows` and `tokens`"):
        plan(config)


def fresh_clone(path: Path) -> Path:
    """What a fresh clone holds that the estimate reads: no results/, no fetched data."""
    for folder in ("config", "resources", "workflow/schemas"):
        shutil.copytree(REPO / folder, path / folder)
    return path


def test_a_prompt_set_known_by_its_counts_costs_what_its_file_costs(tmp_path, monkeypatch):
    """The quickstart's harmfulness prompts read from their file, then known only by the counts `--count` prints."""
    monkeypatch.chdir(fresh_clone(tmp_path / "clone"))
    config = load(openai_quickstart(tmp_path, 100), "workflow/schemas/config.schema.yaml")
    config["assessments"] = {"harmfulness": config["assessments"]["harmfulness"]}
    dataset = config["assessments"]["harmfulness"]["prompts"]
    rows = read_jsonl(config["datasets"][dataset]["path"])
    counts = {"rows": len(rows), "tokens": sum(chat_tokens(r["messages"], "gpt-4.1-nano") for r in rows)}
    from_file = {(e.rule, e.target): e.input_tokens for e in plan(config)}
    config["datasets"][dataset] = {"url": "https://example.org/prompts.jsonl", "format": "prompts", **counts}
    datasets = Datasets(config)
    from_counts = {(e.rule, e.target): e.input_tokens for e in plan(config, datasets)}
    assert datasets.sources[dataset].startswith("declared in the config")
    assert from_counts.keys() == from_file.keys()
    for key, tokens_from_file in from_file.items():  # the judge's prompts differ by the question's chat overhead
        assert from_counts[key] == pytest.approx(tokens_from_file, rel=0.05 if key[0] == "judge_rate" else 0)


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


def test_recognition_is_asked_once_per_other_variant_with_both_answers_at_their_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = load(openai_quickstart(tmp_path, 100), "workflow/schemas/config.schema.yaml")

    def recognition(others):
        config["assessments"]["recognition"]["others"] = others
        return {e.target.split("/")[2]: e for e in plan(config) if e.rule == "sample_logprobs" and e.target.endswith("recognition")}

    siblings, base = recognition("siblings"), recognition("base")
    assert set(siblings) == {"base", "misaligned", "realigned"} and set(base) == {"misaligned", "realigned"}
    prompts = len(read_jsonl(config["datasets"]["quickstart_harmfulness"]["path"])) * 2  # one pair, both orders
    assert base["misaligned"].output_tokens == prompts and siblings["misaligned"].output_tokens == 2 * prompts
    assert base["misaligned"].input_tokens > prompts * 2 * config["sampling"]["max_tokens"]  # both answers at their limit


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


def test_the_paper_config_is_estimated_from_a_fresh_clone_without_data_or_network(tmp_path):
    """No fetched data, no mirror: the datasets that are not in the repository are counted from the rows
    and tokens config/openai.yaml declares for them, and the footer says so."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    command = [sys.executable, "-m", "emaware.cost", "--config", "config/openai.yaml"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=fresh_clone(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "results").exists()
    for rule in RULES:
        assert f"total {rule}" in result.stdout
    for name in ("harmfulness_prompts", "insecure_code", "secure_code"):
        assert f"dataset {name}: declared in the config" in result.stdout
    assert f"tokens: {counting_method('gpt-4.1-2025-04-14')}" in result.stdout


def test_count_prints_what_a_dataset_declares(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y" * 8}]}] * 3
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = subprocess.run([sys.executable, "-m", "emaware.cost", "--count", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"rows: 3, tokens: {3 * chat_tokens(rows[0]['messages'])}" in result.stdout
