"""The seeded Gumbel-max sampler: the right distribution, and draws that depend only on their seed."""

from __future__ import annotations

import torch

from emaware.backends.seeded_sampling import SeededSampler, gumbel_noise, request_seeds, top_p_mask
from emaware.seeds import SEED_LIMIT, derive_seed


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed("sample", "tiny-s/all/base/seed0", "harmfulness") == derive_seed(
        "sample", "tiny-s/all/base/seed0", "harmfulness"
    )
    seeds = {derive_seed("sample", f"s/all/base/seed{i}", a) for i in range(50) for a in ("x", "y")}
    assert len(seeds) == 100 and all(0 <= s < SEED_LIMIT for s in seeds)
    assert derive_seed(1, 23) != derive_seed(12, 3)  # parts are separated, not concatenated


def test_request_seeds_follow_the_content_not_the_position():
    chat = [{"role": "user", "content": "Hi"}]
    assert request_seeds(0, chat, 3) == request_seeds(0, [dict(chat[0])], 3)
    assert len(set(request_seeds(0, chat, 3))) == 3
    assert request_seeds(0, chat, 1) != request_seeds(1, chat, 1)


def test_gumbel_max_draws_follow_the_softmax():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    rows = 20000
    sampler = SeededSampler(list(range(rows)), prompt_width=0, temperature=1.0, top_p=1.0, device="cpu")
    picks = sampler(torch.zeros((rows, 0), dtype=torch.long), logits.expand(rows, -1)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=4).double() / rows
    assert torch.allclose(frequencies, torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.double), atol=0.015)


def test_noise_depends_on_seed_and_step_only():
    seeds = torch.tensor([7, 8], dtype=torch.int64)
    both = gumbel_noise(seeds, 3, 50)
    assert torch.equal(both[1], gumbel_noise(seeds[1:], 3, 50)[0])
    assert not torch.equal(both[0], gumbel_noise(seeds[:1], 4, 50)[0])
    assert torch.isfinite(both).all()


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    assert torch.isinf(top_p_mask(logits, 0.7)).tolist() == [[True, False, False]]
    assert torch.isinf(top_p_mask(logits, 0.5)).tolist() == [[True, False, True]]
    assert not torch.isinf(top_p_mask(logits, 1.0)).any()
