"""The one small interface every backend implements: train, generate, next-token log-probabilities,
log-probabilities of whole candidate replies.

A model is described by a *handle*, the JSON object stored in `results/models/.../model.json`:

- `backend`: the name of the backend that can load or call it (`local`, `openai`).
- `model`: what the backend loads or calls: a hub id or local path (local), a model id (openai).
- `adapters`: local only; LoRA adapter directories applied in order on top of `model`
  (the realigned stage = base + misaligned adapter merged + realigned adapter).
- anything else a backend needs to resume or report (fine-tuning job id, snapshot, parent …).

Messages are OpenAI-style chat dicts: `{"role": "user" | "assistant" | "system", "content": str}`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

Handle = dict[str, Any]
Conversation = list[dict[str, str]]

log = logging.getLogger("emaware")


class Backend(ABC):
    """A way to fine-tune, sample from and score with language models."""

    name: str

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = dict(settings or {})

    def base_handle(self, model: str) -> Handle:
        """The handle of an untouched model."""
        return {"backend": self.name, "model": model, "adapters": []}

    @abstractmethod
    def train(self, parent: Handle, train_file: Path, hparams: dict[str, Any], out_dir: Path, tag: str) -> Handle:
        """Supervised fine-tuning of `parent` on the chat JSONL `train_file`; returns the new handle.

        `out_dir` is the variant's directory (adapter weights, job ids …); `tag` names the variant
        (used as fine-tuning job suffix). Loss is on assistant tokens only.
        """

    @abstractmethod
    def generate(self, model: Handle, conversations: list[Conversation], n: int, sampling: dict[str, Any]) -> list[list[str]]:
        """`n` sampled assistant replies for each conversation (`sampling`: temperature, top_p, max_tokens, seed)."""

    def generate_groups(
        self, model: Handle, groups: list[tuple[list[Conversation], int, dict[str, Any]]]
    ) -> list[list[list[str]]]:
        """`generate` for each (conversations, n, sampling) group; a backend may serve them all at once."""
        return [self.generate(model, conversations, n, sampling) for conversations, n, sampling in groups]

    @abstractmethod
    def next_token_logprobs(
        self,
        model: Handle,
        conversations: list[Conversation],
        top_k: int = 20,
        candidates: tuple[str, ...] | list[tuple[str, ...]] = (),
    ) -> list[dict[str, float]]:
        """Log-probabilities of the first token of the assistant reply, one dict per conversation.

        Each dict holds the `top_k` most likely tokens (decoded text → log-prob) and, where the backend
        can compute them exactly, every string in `candidates` (one tuple for all conversations, or one
        per conversation) that is a single token.
        """

    @abstractmethod
    def candidate_logprobs(
        self, model: Handle, conversations: list[Conversation], candidates: tuple[str, ...] | list[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each candidate as the whole assistant reply, one dict per conversation.

        A candidate is a complete answer ("42", "CODE"), so "4" and "42" exclude each other. The local
        backend computes every candidate exactly, whatever number of tokens it takes; an API that returns
        only the first token's top log-probs gives a candidate only when one of those tokens spells it.
        """

    def snapshot(self, model: Handle) -> str:
        """The exact model that answered (for judgment files): a downloaded model by hub id and commit."""
        name = f"{model['hub_id']}@{model['revision']}" if "hub_id" in model else str(model["model"])
        return name + "".join(f"+{Path(a).name}" for a in model.get("adapters", []))


def get_backend(name: str, settings: dict[str, Any] | None = None) -> Backend:
    """The backend called `name`, configured with `settings` (the config's `backends.<name>` block)."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(settings)
    if name == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    from .. import UserError

    raise UserError(f"unknown backend {name!r} (known: local, openai)")
