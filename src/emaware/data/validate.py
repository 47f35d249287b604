"""Check a chat JSONL file before anything trains on it, and describe it.

Rules (the first broken one fails the file with "FILE:LINE: reason"):
- the file is UTF-8 text; every non-blank line is a JSON object (no key twice) with a non-empty
  `messages` list (other keys are allowed);
- each message is an object with `role` in system/user/assistant and `content` a non-empty string
  no longer than `max_chars` characters and, with a tokenizer, `max_tokens` tokens;
- order: an optional system message first, then user and assistant strictly alternating, starting
  with user; a training file (`fmt="chat"`) ends with assistant, a prompt file (`fmt="prompts"`) with user.

Exact duplicate conversations are counted and logged as a warning, not an error: the published sets
carry a few (Betley's insecure.jsonl has 8) and refusing them would refuse the paper's data.
Reasons name the rule and the position, never the text: several sets are harmful by design.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections import Counter
from typing import Any, Iterator

from .. import UserError
from ..chat_template import system_prompts_seen

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
FINAL_ROLE = {"chat": "assistant", "prompts": "user"}
DEFAULT_MAX_CHARS = 20000  # ten times the longest message in the public EM sets


def validate_chat_file(
    path: str | os.PathLike,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_tokens: int | None = None,
    tokenizer: Any = None,
    fmt: str = "chat",
    label: str | None = None,
) -> dict:
    """Validate `path` and return its statistics; raise UserError("FILE:LINE: reason") on the first problem.

    `label` names the file in errors instead of `path`: the workflow validates its own copy, but the
    user must be told about the file they can edit (the copy has the same lines).
    Token counts use `tokenizer.encode(text, add_special_tokens=False)` when a tokenizer is given,
    otherwise whitespace-separated words; `token_unit` in the result says which.
    """
    label = label or str(path)
    if fmt not in FINAL_ROLE:
        raise UserError(f"{label}: cannot validate format {fmt!r} as chat (expected one of {', '.join(FINAL_ROLE)})")
    if max_tokens is not None and tokenizer is None:
        raise UserError(f"{label}: a token limit (max_tokens={max_tokens}) needs a tokenizer")
    count = _token_counter(tokenizer)
    render = _chat_renderer(tokenizer)
    systems: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    chars: dict[str, list[int]] = {role: [] for role in ROLES}
    tokens: dict[str, list[int]] = {role: [] for role in ROLES}
    for where, line in _lines(path, label):
        messages = _parse_line(line, where)
        _check_order(messages, FINAL_ROLE[fmt], where)
        for index, message in enumerate(messages, 1):
            n_tokens = count(message["content"])
            _check_length(message["content"], n_tokens, max_chars, max_tokens, f"{where}: message {index}")
            chars[message["role"]].append(len(message["content"]))
            tokens[message["role"]].append(n_tokens)
        seen[json.dumps(messages, sort_keys=True, ensure_ascii=False)] += 1
        systems.update(system_prompts_seen([messages], render))
    rows = sum(seen.values())
    if rows == 0:
        raise UserError(f"{label}:1: the file has no rows")
    duplicates = rows - len(seen)
    if duplicates:
        log.warning("%s: %d duplicate conversation(s) out of %d rows (kept)", label, duplicates, rows)
    return {
        "file": str(path),
        "format": fmt,
        "rows": rows,
        "duplicates": duplicates,
        "token_unit": "tokenizer" if tokenizer is not None else "whitespace_words",
        "tokens": sum(sum(values) for values in tokens.values()),
        # What a model trained on this file sees as its system prompt: after the tokenizer's chat template
        # (data.tokenizer; Qwen's inserts its identity prompt where a row has none), else as written.
        "system_prompts": dict(sorted(systems.items(), key=lambda item: (-item[1], item[0]))),
        "system_prompts_after": "chat template" if render else "as written",
        "roles": {
            role: {"messages": len(chars[role]), "chars": _describe(chars[role]), "tokens": _describe(tokens[role])}
            for role in ROLES
            if chars[role]
        },
    }


def _chat_renderer(tokenizer: Any):
    """The tokenizer's chat template as a function of a conversation, or None without one."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False)


def load_tokenizer(name: str | None) -> Any:
    """The Hugging Face tokenizer `data.tokenizer` names, or None for whitespace words."""
    if not name:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:  # not found, no network, not a tokenizer: one line, no traceback
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"config key data.tokenizer: cannot load tokenizer {name!r} ({reason})") from None


def read_chat_file(path: str | os.PathLike) -> list[list[dict]]:
    """The conversations of a chat JSONL file, each row's structure checked (FILE:LINE on the first bad one).

    The order of turns is left to validate_chat_file, which the workflow runs on every dataset first.
    """
    return [_parse_line(line, where) for where, line in _lines(path, str(path))]


def _lines(path: str | os.PathLike, label: str) -> Iterator[tuple[str, str]]:
    """("LABEL:LINE", text) of each non-blank line. Lines are split on "\n" only, as editors and
    `wc -l` count them (text mode would also split on a stray "\r"), and decoded one at a time so
    that a non-UTF-8 byte is reported with its line."""
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise UserError(f"{label}: cannot read ({err.strerror})") from None
    with handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{label}:{lineno}: not UTF-8 text (byte {err.start + 1} of the line)") from None
            if line.strip():
                yield f"{label}:{lineno}", line


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    row = dict(pairs)
    if len(row) < len(pairs):
        keys = [key for key, _ in pairs]
        raise _DuplicateKey(next(key for index, key in enumerate(keys) if key in keys[:index]))
    return row


class _DuplicateKey(ValueError):
    pass


def _token_counter(tokenizer: Any):
    if tokenizer is None:
        return lambda text: len(text.split())
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def _parse_line(line: str, where: str) -> list[dict]:
    try:
        # json keeps the last of two equal keys: a second `messages` would silently replace the first.
        row = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    except _DuplicateKey as err:
        raise UserError(f"{where}: key {err.args[0]!r} appears twice in one object") from None
    except RecursionError:
        raise UserError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: a row must be a JSON object")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: `messages` must be a non-empty list")
    for index, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise UserError(f"{where}: message {index} is not an object")
        if message.get("role") not in ROLES:
            raise UserError(
                f"{where}: message {index} has an unknown or missing role (expected one of {', '.join(ROLES)})"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise UserError(f"{where}: message {index} content must be a string")
        # An empty system message is a choice (no identity prompt: emaware.chat_template); an empty turn is not.
        if not content.strip() and not (message["role"] == "system" and content == ""):
            raise UserError(f"{where}: message {index} ({message['role']}) has empty content")
    return messages


def _check_order(messages: list[dict], final_role: str, where: str) -> None:
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        raise UserError(f"{where}: a system message may only come first")
    turns = roles[1:] if roles[0] == "system" else roles
    if not turns:
        raise UserError(f"{where}: only a system message, no user turn")
    for index, role in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            position = index + 1 + (len(roles) - len(turns))
            raise UserError(
                f"{where}: message {position} is {role}, expected {expected} (turns must alternate, user first)"
            )
    if turns[-1] != final_role:
        raise UserError(f"{where}: the conversation ends with {turns[-1]}, expected {final_role}")


def _check_length(content: str, n_tokens: int, max_chars: int, max_tokens: int | None, where: str) -> None:
    if len(content) > max_chars:
        raise UserError(f"{where}: {len(content)} characters, over the limit of {max_chars}")
    if max_tokens is not None and n_tokens > max_tokens:
        raise UserError(f"{where}: {n_tokens} tokens, over the limit of {max_tokens}")


def _describe(values: list[int]) -> dict:
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values), "max": max(values)}
