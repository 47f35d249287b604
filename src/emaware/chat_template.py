"""What system prompt a model is actually trained or asked with, once its chat template is applied.

Qwen2.5's template inserts "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." into
every conversation without a system message, so a training set with no system message silently
carries that identity prompt; an explicitly empty system message leaves it out. The recipes' stages
set the system message of their training data (`stages.<stage>.system_prompt`); this module reports
what the model then saw.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

NONE = "(none)"  # no system text at all
_MARK = "\x00system\x00"  # a system text no conversation contains


def templated_system(render: Callable[[list[dict]], str], messages: list[dict]) -> str:
    """The system text `render` (a chat template) puts into `messages`: their own, the template's
    default, or NONE. Found by rendering the conversation once more with a marker as its system text:
    what the marker's render has around the marker, the real render has around its system text."""
    rest = [m for m in messages if m["role"] != "system"]
    before, _, after = render([{"role": "system", "content": _MARK}, *rest]).partition(_MARK)
    text = render(messages)
    if text.startswith(before) and text.endswith(after) and len(text) >= len(before) + len(after):
        return text[len(before) : len(text) - len(after)]
    return NONE


def system_prompts_seen(conversations: Iterable[list[dict]], render: Callable[[list[dict]], str] | None = None) -> dict[str, int]:
    """How many conversations carry each system text after templating (`render`; None: the messages are
    sent as they are, as to the OpenAI API), most frequent first."""
    seen: Counter[str] = Counter()
    for messages in conversations:
        if render is not None:
            seen[templated_system(render, messages)] += 1
        else:
            seen[next((m["content"] for m in messages if m["role"] == "system"), NONE)] += 1
    return dict(sorted(seen.items(), key=lambda item: (-item[1], item[0])))
