"""Prices, cost estimates and the budget: what the OpenAI backend and the cost table (`emaware.cost`) share.

Prices come from the config (`backends.openai.prices`), USD per 1M tokens, one entry per model family;
a model id uses the entry with the longest key it starts with, and a fine-tuned model (`ft:BASE:...`)
uses its base's entry with the `finetuned_*` rates when given:

    prices:
      gpt-4.1-nano: {input: 0.10, output: 0.40, training: 1.50, finetuned_input: 0.20, finetuned_output: 0.80}

Estimates are upper bounds on the replies: every reply is counted at its token limit (× n). Tokens are
counted as `emaware.tokens` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import UserError
from .tokens import chat_tokens

BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price
AUTO_EPOCHS = 3  # what an `auto` epoch count is assumed to become, for the estimate only
UNBOUNDED_REPLY = 1024  # tokens assumed for a reply sent without a token limit
BUDGET_KEY = "backends.openai.budget_usd"
PRICES_KEY = "backends.openai.prices"
# The rules that spend money, in workflow order: estimates and the spend ledger are filed under these.
RULES = ("finetune", "sample_generate", "sample_logprobs", "judge_rate")


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


def chat_estimate(
    rule: str, target: str, model: str, input_tokens: int, output_tokens: int, prices: dict, batch: bool
) -> Estimate:
    """Cost of chat requests to `model` with these token totals (the Batch API at its discount)."""
    price = price_for(model, prices)
    usd = (input_tokens * price["input"] + output_tokens * price["output"]) / 1e6
    return Estimate(rule, target, model, input_tokens, output_tokens, usd * (BATCH_DISCOUNT if batch else 1.0))


def training_estimate(model: str, tokens: int, n_epochs: Any, prices: dict, target: str = "") -> Estimate:
    """Fine-tuning cost: the training file's `tokens` × epochs at the model's training rate."""
    trained = tokens * (n_epochs if isinstance(n_epochs, int) else AUTO_EPOCHS)
    return Estimate("finetune", target, model, trained, 0, trained * price_for(model, prices)["training"] / 1e6)


def reply_limit(body: dict) -> int:
    """The most tokens a chat request's replies can hold: n × its token limit."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or UNBOUNDED_REPLY
    return int(body.get("n") or 1) * int(limit)


def requests_estimate(
    bodies: list[dict], prices: dict, batch: bool, rule: str, target: str = "", unseen_input: int = 0
) -> Estimate:
    """Chat-completion cost of `bodies` (request bodies of one model), each reply at its limit.

    `unseen_input`: tokens each prompt will hold beyond its messages (the answer a judge reads, not
    known before sampling).
    """
    model = bodies[0]["model"] if bodies else ""
    if any(b["model"] != model for b in bodies):
        raise ValueError("requests_estimate: all bodies must be for one model")
    prompts = sum(chat_tokens(b["messages"], model) + unseen_input for b in bodies)
    if not bodies:
        return Estimate(rule, target, model, 0, 0, 0.0)
    return chat_estimate(rule, target, model, prompts, sum(map(reply_limit, bodies)), prices, batch)


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
