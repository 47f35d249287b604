"""Every random draw of a run comes from the config's seeds and the identity of the job that makes it.

`derive_seed(seed, "sample", variant, assessment)` gives the same 32-bit seed for the same inputs on
every machine and Python version (sha256 of the parts, not Python's salted `hash`), so two runs of one
config draw the same numbers, and two jobs (or two seeds of a variant) never share a stream.
"""

from __future__ import annotations

import hashlib

SEED_LIMIT = 2**32  # numpy, torch, transformers and vLLM all accept seeds below this


def derive_seed(*parts: object) -> int:
    """A seed in [0, 2**32) determined by `parts` (ints and strings, in order)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")
