"""Token counts of chat messages, as an OpenAI model's tokenizer counts them (for estimates and checks).

Counted with tiktoken, in the encoding of the model (`tiktoken.encoding_name_for_model`; a fine-tuned
`ft:BASE:...` id counts as BASE, and an id tiktoken does not know as o200k_base, GPT-4.1's encoding), when
tiktoken is installed and that encoding's file is already on disk. tiktoken downloads an encoding at
its first use, which cannot work offline (and could hang), so it is used only from its cache: fill the
cache once on a machine with internet access and point TIKTOKEN_CACHE_DIR at it,

    TIKTOKEN_CACHE_DIR=~/.cache/tiktoken python -c "import tiktoken; tiktoken.get_encoding('o200k_base')"

Otherwise tokens are estimated as ceil(characters / 4), OpenAI's rule of thumb for English text (code
and non-English text have more tokens per character). `counting_method` says which one a count used.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

DEFAULT_ENCODING = "o200k_base"
# Where tiktoken's own constructors (tiktoken_ext.openai_public) download an encoding from; its cache
# file is named by the sha1 of this URL.
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
MESSAGE_OVERHEAD, REPLY_PRIMING = 4, 3  # OpenAI's per-message and reply-priming tokens of a chat


def encoding_name(model: str | None) -> str:
    """The tiktoken encoding of `model` (o200k_base when unknown or not given)."""
    if not model:
        return DEFAULT_ENCODING
    base = model.split(":")[1] if model.startswith("ft:") else model
    try:
        import tiktoken

        return tiktoken.encoding_name_for_model(base)
    except (ImportError, KeyError):
        return DEFAULT_ENCODING


def cached_encoding_file(name: str) -> Path | None:
    """tiktoken's cache file of encoding `name` when it is on disk (where tiktoken itself looks)."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:  # tiktoken's "no cache": it would download
        return None
    path = Path(cache_dir) / hashlib.sha1(ENCODING_URL.format(name).encode()).hexdigest()
    return path if path.is_file() else None


@lru_cache(maxsize=None)
def _encoder(name: str) -> Callable[[str], int] | None:
    if cached_encoding_file(name) is None:
        return None
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(name)
    except Exception:  # not installed, or a cache file that fails tiktoken's hash check
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def _estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def counting_method(model: str | None = None) -> str:
    """How `count_tokens(…, model)` counts, in words (for tables and logs)."""
    name = encoding_name(model)
    if _encoder(name) is not None:
        return f"tiktoken {name}"
    return f"estimated as characters/4 (tiktoken's {name} is not available offline: set TIKTOKEN_CACHE_DIR)"


def count_tokens(text: str, model: str | None = None) -> int:
    return (_encoder(encoding_name(model)) or _estimate)(text)


def chat_tokens(messages: Iterable[dict[str, Any]], model: str | None = None) -> int:
    """Prompt tokens of a chat: each message's content plus OpenAI's per-message and reply-priming overhead."""
    count = _encoder(encoding_name(model)) or _estimate
    return sum(count(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in messages) + REPLY_PRIMING
