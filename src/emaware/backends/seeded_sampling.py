"""Sampling whose draws depend only on (seed, conversation, sample index, step), never on the batch.

`generate(do_sample=True)` draws every row of a batch from torch's one global stream, so a sample
changes with the batch size, the order of the prompts and what else ran in the process. Here each row
gets its own seed, and the token at each step is the Gumbel-max draw argmax(logits / T + G), where the
Gumbel noise G is a counter-based hash of (row seed, step, token id): the same request gives the same
answer whatever it is batched with, on any device. transformers has no per-row generator, hence this
small logits processor (greedy decoding then takes the argmax).
"""

from __future__ import annotations

import json

import torch

from ..seeds import derive_seed

_MASK = 0xFFFFFFFF
# Multipliers below 2**31 keep every product of a 32-bit value inside int64 (no overflow on any device).
_MULTIPLIERS = (0x7FEB352D, 0x2C1B3C6D, 0x297A2D39)


def request_seeds(seed: int, conversation: list[dict], n: int) -> list[int]:
    """The seed of each of the `n` samples of one conversation (its content, not its position, counts)."""
    key = json.dumps(conversation, sort_keys=True, ensure_ascii=False)
    return [derive_seed(seed, key, i) for i in range(n)]


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of int64 values in [0, 2**32) (xorshift-multiply rounds)."""
    for multiplier in _MULTIPLIERS:
        x = x ^ (x >> 16)
        x = (x * multiplier) & _MASK
    return x ^ (x >> 16)


def gumbel_noise(row_seeds: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise [rows, vocab] determined by each row's seed, the step and the token id."""
    device = row_seeds.device
    step_key = mix32(torch.tensor([step], dtype=torch.int64, device=device))
    row_key = mix32(row_seeds ^ step_key)
    bits = mix32(row_key[:, None] ^ torch.arange(vocab, dtype=torch.int64, device=device)[None, :])
    uniform = (bits.double() + 0.5) / 2**32  # strictly inside (0, 1)
    return -torch.log(-torch.log(uniform))


def top_p_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The logits with every token outside the nucleus of probability `top_p` set to -inf."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # the mass before a token; the top token always stays
    drop = torch.empty_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


class SeededSampler:
    """A transformers logits processor: temperature, nucleus, then per-row Gumbel noise for greedy argmax."""

    def __init__(self, row_seeds: list[int], prompt_width: int, temperature: float, top_p: float, device):
        self.row_seeds = torch.tensor(row_seeds, dtype=torch.int64, device=device)
        self.prompt_width = prompt_width
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_width
        logits = top_p_mask(scores.float() / self.temperature, self.top_p)
        noise = gumbel_noise(self.row_seeds, step, logits.shape[-1]).to(logits.dtype)
        return logits + noise
