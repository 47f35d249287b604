"""Token and dollar estimates for the OpenAI backend, and the budget that stops a run before it overspends.

Prices come from the config (`backends.openai.prices`), USD per 1M tokens, one entry per model family;
a model id uses the entry with the longest key it starts with, and a fine-tuned model (`ft:BASE:...`)
uses its base's entry with the `finetuned_*` rates when given:

    prices:
      gpt-4.1-nano: {input: 0.10, output: 0.40, training: 1.50, finetuned_input: 0.20, finetuned_output: 0.80}

Estimates are upper bounds: every reply is counted at `max_tokens` (× n). Tokens are counted with
tiktoken (o200k_base, the GPT-4.1 encoding) when it is installed and its encoding loads offline, else
as ceil(characters / 4), OpenAI's rule of thumb for English text.

Run `python -m emaware.cost --config config/config.yaml` from the workflow's directory for a table per
rule and the total of the whole experiment; it validates the config like the workflow, needs no API
key and makes no request.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable


from . import UserError
from .assessments import ASSESSMENTS
from .config import DATASET_KEYS, assessment_settings, dataset_file, training_hparams, variants
from .config import load as load_config
from .data import domain_size, subsample
from .io import read_jsonl
from .judge import load_judge_prompt

BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price
AUTO_EPOCHS = 3  # what an `auto` epoch count is assumed to become, for the estimate only
UNBOUNDED_REPLY = 1024  # tokens assumed for a reply sent without max_tokens
BUDGET_KEY = "backends.openai.budget_usd"
PRICES_KEY = "backends.openai.prices"


@lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int]:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
        return lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception:  # not installed, or its encoding file cannot be fetched offline
        return lambda text: math.ceil(len(text) / 4)


def count_tokens(text: str) -> int:
    return _encoder()(text)


def chat_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """Prompt tokens of a chat: content plus OpenAI's per-message (≈4) and reply-priming (≈3) overhead."""
    return sum(count_tokens(str(m.get("content") or "")) + 4 for m in messages) + 3


def find_price(model: str, prices: dict[str, dict[str, float]]) -> dict[str, float] | None:
    """The price entry of `model` (per 1M tokens: input, output, training), or None."""
    finetuned = model.startswith("ft:")
    base = model.split(":")[1] if finetuned else model
    keys = [k for k in prices if base.startswith(k)]
    if not keys:
        return None
    entry = prices[max(keys, key=len)]
    price = {"input": entry["input"], "output": entry["output"], "training": entry.get("training", 0.0)}
    if finetuned:
        price["input"] = entry.get("finetuned_input", entry["input"])
        price["output"] = entry.get("finetuned_output", entry["output"])
    return price


def price_for(model: str, prices: dict[str, dict[str, float]]) -> dict[str, float]:
    price = find_price(model, prices)
    if price is None:
        raise UserError(
            f"no price for model {model!r} in config key {PRICES_KEY} (known: {', '.join(prices) or 'none'})"
        )
    return price


@dataclass
class Estimate:
    rule: str
    target: str
    model: str
    input_tokens: int
    output_tokens: int
    usd: float


def training_estimate(
    model: str, conversations: list[list[dict]], n_epochs: Any, prices: dict, target: str = ""
) -> Estimate:
    """Fine-tuning cost: the training file's tokens × epochs at the model's training rate."""
    epochs = n_epochs if isinstance(n_epochs, int) else AUTO_EPOCHS
    tokens = sum(chat_tokens(c) for c in conversations) * epochs
    return Estimate("finetune", target, model, tokens, 0, tokens * price_for(model, prices)["training"] / 1e6)


def requests_estimate(
    bodies: list[dict], prices: dict, batch: bool, rule: str, target: str = "", unseen_input: int = 0
) -> Estimate:
    """Chat-completion cost of `bodies` (request bodies); each reply counted at max_tokens, n times.

    `unseen_input`: tokens each prompt will hold beyond its messages (the answer a judge reads,
    not known before sampling).
    """
    usd, input_tokens, output_tokens = 0.0, 0, 0
    for body in bodies:
        price = price_for(body["model"], prices)
        prompt = chat_tokens(body["messages"]) + unseen_input
        reply = int(body.get("n") or 1) * int(body.get("max_tokens") or UNBOUNDED_REPLY)
        input_tokens, output_tokens = input_tokens + prompt, output_tokens + reply
        usd += (prompt * price["input"] + reply * price["output"]) / 1e6
    model = bodies[0]["model"] if bodies else ""
    return Estimate(rule, target, model, input_tokens, output_tokens, usd * (BATCH_DISCOUNT if batch else 1.0))


def usage_cost(usage: dict[str, Any], price: dict[str, float], batch: bool) -> float:
    """What a response's `usage` actually cost."""
    usd = (usage.get("prompt_tokens", 0) * price["input"] + usage.get("completion_tokens", 0) * price["output"]) / 1e6
    return usd * (BATCH_DISCOUNT if batch else 1.0)


class Budget:
    """Stops before spending more than `limit_usd` in total (what the ledger says was spent + this step)."""

    def __init__(self, limit_usd: float | None, spent: Callable[[], float] = lambda: 0.0):
        self.limit = limit_usd
        self.spent = spent

    def check(self, estimate_usd: float, what: str) -> None:
        if self.limit is None:
            return
        spent = self.spent()
        if spent + estimate_usd > self.limit:
            raise UserError(
                f"estimated cost ${spent + estimate_usd:.2f} (${spent:.2f} spent so far + ${estimate_usd:.2f} for {what}) "
                f"exceeds budget ${self.limit:.2f} set in config key {BUDGET_KEY}"
            )


# -- the whole experiment ----------------------------------------------------------------------
RULES = ("finetune", "sample_generate", "sample_logprobs", "judge_rate")


@dataclass
class _Workload:
    """What one variant asks of the API for one assessment (the same for every variant)."""

    prompts: list[list[dict]]  # sample_generate: each sampled n times
    n: int
    max_tokens: int | None
    logprob_prompts: list[list[dict]]  # sample_logprobs: one next-token request each
    judge_prompts: list[list[dict]]  # judge_rate: the judge's prompt without the answer, per sample judged


def plan(config: dict) -> list[Estimate]:
    """One estimate per paid rule run of the experiment a validated `config` describes.

    Paths are read relative to the working directory, as the workflow does. Fine-tuning, sampling and
    logprob requests count for sizes on the openai backend, judging for every variant when the judge is
    on openai. Prompts are built by the assessments' own `build_prompts`; training sets are subsampled as
    the workflow does; answers the judge will read are counted at their max_tokens bound.
    """
    settings = config["backends"].get("openai", {})
    prices, batch, judge = settings.get("prices") or {}, bool(settings.get("batch_api", False)), config["judge"]
    workloads = {name: _workload(config, name) for name in config["assessments"]}
    estimates: list[Estimate] = []
    for variant in variants(config):
        size = config["sizes"][variant.size]
        paid = size["backend"] == "openai"
        model = size["model"] if variant.stage == "base" else f"ft:{size['model']}"
        if paid and variant.stage != "base":
            domain = config["domains"][variant.domain]
            rows = read_jsonl(_dataset_path(config, domain[variant.stage]))
            rows = subsample(rows, domain_size(variant.domain, domain), config["data"]["subsample_seed"])
            epochs = training_hparams(config, variant.size, variant.seed).get("n_epochs")
            estimates.append(
                training_estimate(size["model"], [r["messages"] for r in rows], epochs, prices, variant.path)
            )
        for name, work in workloads.items():
            target = f"{variant.path}/{name}"
            if paid:
                bodies = [
                    {"model": model, "messages": m, "n": work.n, "max_tokens": work.max_tokens} for m in work.prompts
                ]
                estimates.append(requests_estimate(bodies, prices, batch, "sample_generate", target))
            if paid and work.logprob_prompts:
                bodies = [{"model": model, "messages": m, "max_tokens": 1} for m in work.logprob_prompts]
                estimates.append(requests_estimate(bodies, prices, batch, "sample_logprobs", target))
            if work.judge_prompts:
                bodies = [{"model": judge["model"], "messages": m, "max_tokens": 1} for m in work.judge_prompts]
                answer = work.max_tokens or UNBOUNDED_REPLY
                estimates.append(requests_estimate(bodies, prices, batch, "judge_rate", target, unseen_input=answer))
    return estimates


def _workload(config: dict, name: str) -> _Workload:
    module, spec = ASSESSMENTS[name], config["assessments"][name]
    settings = assessment_settings(config, name)
    if name in DATASET_KEYS:  # not fetched yet: read the config's own copy
        settings[DATASET_KEYS[name]] = str(_dataset_path(config, spec[DATASET_KEYS[name]]))
    prompts = module.build_prompts(settings)
    n, max_tokens = int(spec.get("samples", 1)), spec.get("max_tokens") or config["sampling"].get("max_tokens")
    logprob_rows = module.logprob_requests(prompts)[0] if module.needs_logprobs else []
    judge_prompts = []
    if module.needs_judge and config["judge"]["backend"] == "openai":
        samples = [{**p, "sample": i, "completion": ""} for p in prompts for i in range(n)]
        judged = module.to_judge(samples) if hasattr(module, "to_judge") else samples
        template = load_judge_prompt(spec["judge_prompt"])
        judge_prompts = [template.conversation(s["messages"][-1]["content"], "") for s in judged]
    return _Workload(
        [p["messages"] for p in prompts], n, max_tokens, [r["messages"] for r in logprob_rows], judge_prompts
    )


def _dataset_path(config: dict, name: str) -> Path:
    """The workflow's fetched copy, else the config's `path`, else the copy under data.mirror."""
    spec = config["datasets"][name]
    mirror = config["data"].get("mirror")
    candidates = [Path(dataset_file(config, name))]
    candidates += [Path(spec["path"])] if spec.get("path") else []
    candidates += [Path(mirror) / spec["mirror"]] if mirror and spec.get("mirror") else []
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(
        f"cannot estimate: dataset {name!r} has no local copy (set data.mirror or run the data_fetch rules first)"
    )


def format_table(estimates: list[Estimate], budget: float | None) -> str:
    rules = [r for r in RULES if any(e.rule == r for e in estimates)]
    lines = [f"{'rule':<16} {'target':<48} {'model':<28} {'input tok':>12} {'output tok':>12} {'USD':>9}"]
    lines += [
        f"{e.rule:<16} {e.target:<48} {e.model:<28} {e.input_tokens:>12,} {e.output_tokens:>12,} {e.usd:>9.2f}"
        for e in sorted(estimates, key=lambda e: (rules.index(e.rule), e.target))
    ]
    lines.append("")
    for rule in rules:
        chosen = [e for e in estimates if e.rule == rule]
        tokens = f"{sum(e.input_tokens for e in chosen):>12,} {sum(e.output_tokens for e in chosen):>12,}"
        lines.append(f"{'total ' + rule:<94} {tokens} {sum(e.usd for e in chosen):>9.2f}")
    lines.append(
        f"{'TOTAL (an upper bound: replies at max_tokens, the cache not counted)':<120} {sum(e.usd for e in estimates):>9.2f}"
    )
    lines.append(f"budget ({BUDGET_KEY}): " + ("none" if budget is None else f"${budget:.2f}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emaware.cost",
        description="Estimate the OpenAI cost of the experiment (run from the workflow's directory; no key needed).",
    )
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="the workflow's config file")
    parser.add_argument("--schema", type=Path, default=Path("workflow/schemas/config.schema.yaml"))
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.schema)
        estimates = plan(config)
        budget = config["backends"].get("openai", {}).get("budget_usd")
        print(format_table(estimates, budget))
        Budget(budget).check(sum(e.usd for e in estimates), "the whole experiment")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
