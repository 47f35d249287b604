"""The local backend's answer cache: every reply (a conversation's sampled answers, or its next-token
log-probabilities) stored under a key of everything that decides it.

A variant's sampling job covers all of its assessments, so that the model is loaded once. When one
assessment's prompts or settings change, that job reruns; the other assessments' answers then come from
here and only what changed reaches the model (nothing is loaded when nothing changed). It is safe because
sampling is seeded per request: an answer does not depend on the batch or job it was made in.

The key (`emaware.openai_cache.request_key` of the request) holds the model's identity and the full
request. Identity: a downloaded model's hub id and commit, or a digest of a local model directory's files;
a digest of each adapter's files (a retrained adapter misses); the dtype and device type; the sampler
(vLLM or transformers, which draw differently); the torch and transformers versions. Request: the
conversation, the sampling settings with the job's seed and n, or top_k and the candidate tokens, or the
candidate replies.

Each job has a file of its own (`results/<run>/cache/<variant>/<role>.sqlite`), so no two jobs write
one file at once, also on a cluster's shared filesystem. Deleting the folder only costs recomputation.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from ..openai_cache import ResponseCache
from .base import Conversation, Handle, log

# Files larger than this are identified by size and modification time instead of content: hashing a
# 64 GB checkpoint would take minutes per job, and rewriting a file changes its modification time.
HASHED_BYTES = 1 << 30
GENERATE, LOGPROBS, CANDIDATES = "local/generate", "local/logprobs", "local/candidates"


@functools.lru_cache(maxsize=None)
def directory_digest(path: str) -> str:
    """sha256 over a file or directory tree (relative names and contents)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        stat = file.stat()
        if stat.st_size > HASHED_BYTES:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            continue
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(handle: Handle, dtype: str, device: str) -> dict[str, Any]:
    import torch
    import transformers

    if "hub_id" in handle:
        model = f"{handle['hub_id']}@{handle['revision']}"
    elif os.path.exists(handle["model"]):
        model = directory_digest(str(handle["model"]))
    else:
        model = str(handle["model"])  # a hub id read from the hub cache
    return {
        "model": model,
        "adapters": [directory_digest(str(a)) for a in handle.get("adapters", [])],
        "dtype": dtype,
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


class AnswerCache:
    """Replies by request, for one model identity."""

    def __init__(self, path: str | Path, identity: dict[str, Any]):
        self.store = ResponseCache(path, label="local answer cache")
        self.identity = identity

    def generation(self, sampler: str, conversation: Conversation, n: int, sampling: dict[str, Any]) -> dict:
        options = {key: sampling.get(key) for key in ("temperature", "top_p", "max_tokens", "seed")}
        return {"model": self.identity, "sampler": sampler, "messages": conversation, "n": n, **options}

    def logprobs(self, conversation: Conversation, top_k: int, candidates: tuple[str, ...]) -> dict:
        return {"model": self.identity, "messages": conversation, "top_k": top_k, "candidates": sorted(candidates)}

    def candidates(self, conversation: Conversation, candidates: tuple[str, ...]) -> dict:
        return {"model": self.identity, "messages": conversation, "candidates": sorted(candidates)}

    def lookup(self, endpoint: str, requests: list[dict]) -> list[Any]:
        """The stored reply to each request, or None; one log line says how many were found."""
        found = [self.store.get(endpoint, request) for request in requests]
        replies = [None if f is None else f["reply"] for f in found]
        hits = sum(r is not None for r in replies)
        log.info("local answer cache: %d of %d replies found in %s", hits, len(replies), self.store.path)
        return replies

    def lookup_whole(self, endpoint: str, requests: list[dict]) -> list[Any] | None:
        """The stored replies to all `requests`, or None when any is missing: log-probs are then computed
        again for the whole call, because reusing some would batch the others differently from a clean
        run, which changes log-probs in their last float digits (the tables print them all)."""
        found = self.lookup(endpoint, requests)
        return found if all(r is not None for r in found) else None

    def put(self, endpoint: str, request: dict, reply: Any) -> None:
        self.store.put(endpoint, request, {"reply": reply})

