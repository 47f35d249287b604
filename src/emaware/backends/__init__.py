"""Backends: local (transformers + peft, vLLM when installed) and openai (or any compatible endpoint)."""

from .base import Backend, Conversation, Handle, get_backend

__all__ = ["Backend", "Conversation", "Handle", "get_backend"]
