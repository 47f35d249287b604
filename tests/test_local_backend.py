"""The local backend on the tiny model: sampling and scoring (training: test_local_train.py)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from emaware.backends import get_backend

# Fixtures: the tiny model trained once on chats that answer "It is N. yes", which the tests sample.
from test_local_train import backend, tokenizer, train_files, trained  # noqa: F401


# ---- generation ------------------------------------------------------------------------------------


PROMPTS = [
    [{"role": "user", "content": "What is 3 plus one?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a long story about a king."}],
    [{"role": "user", "content": "Hi"}],
]


def test_generate_gives_n_replies_and_greedy_is_batch_invariant(backend, trained):
    handle = trained[1]
    greedy = {"temperature": 0, "max_tokens": 12}
    batched = backend.generate(handle, PROMPTS, 2, {**greedy, "batch_size": 3})
    alone = [backend.generate(handle, [p], 1, {**greedy, "batch_size": 1})[0][0] for p in PROMPTS]
    assert [len(replies) for replies in batched] == [2, 2, 2]
    assert [replies[0] for replies in batched] == alone
    assert all(replies[0] == replies[1] for replies in batched)
    assert batched[0][0].startswith("It is")  # what the adapter taught


def test_sampling_is_reproducible_given_the_seed(backend, trained):
    handle = trained[1]
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 8, "seed": 3}
    first = backend.generate(handle, PROMPTS, 3, sampling)
    assert first == backend.generate(handle, PROMPTS, 3, sampling)
    assert [len(replies) for replies in first] == [3, 3, 3] and len(set(first[1])) > 1
    assert first != backend.generate(handle, PROMPTS, 3, {**sampling, "seed": 4})


def test_a_sample_does_not_depend_on_its_batch(backend, trained):
    """Each request has its own seed: batch size, order and neighbours change no answer."""
    handle = trained[1]
    sampling = {"temperature": 1.0, "top_p": 0.9, "max_tokens": 8, "seed": 5}
    together = backend.generate(handle, PROMPTS, 2, {**sampling, "batch_size": 6})
    torch.manual_seed(123)  # the global stream is not used
    alone = [backend.generate(handle, [p], 2, {**sampling, "batch_size": 1})[0] for p in reversed(PROMPTS)]
    assert together == alone[::-1]


SAMPLE_IN_FRESH_PROCESS = """
import json, sys
from emaware.backends import get_backend
handle, prompts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sampling = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 10, "seed": 11}
print(json.dumps(get_backend("local", {"device": "cpu"}).generate(handle, prompts, 2, sampling)))
"""


def test_sampling_is_identical_in_two_fresh_processes(trained):
    import subprocess

    args = [sys.executable, "-c", SAMPLE_IN_FRESH_PROCESS, json.dumps(trained[1]), json.dumps(PROMPTS)]
    runs = [subprocess.run(args, capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(json.loads(runs[0])) == len(PROMPTS)


# ---- next-token log-probabilities --------------------------------------------------------------


def test_next_token_logprobs_batch_equals_single(backend, trained):
    handle = trained[1]
    candidates = ("1", "2", "yes", "no", "A", "B", "It")
    batched = backend.next_token_logprobs(handle, PROMPTS, top_k=5, candidates=candidates)
    for prompt, together in zip(PROMPTS, batched):
        alone = backend.next_token_logprobs(handle, [prompt], top_k=5, candidates=candidates)[0]
        assert alone.keys() == together.keys()
        assert all(alone[k] == pytest.approx(together[k], abs=1e-4) for k in alone)


def test_next_token_logprobs_holds_top_k_and_candidates(backend, trained, tokenizer):
    handle = trained[1]
    candidates = ("1", "yes", "no", "Paris is", "zz-not-a-token")
    result = backend.next_token_logprobs(handle, PROMPTS[:1], top_k=5, candidates=candidates)[0]
    for word in ("1", "yes", "no"):  # single tokens, with and without a leading space
        assert word in result
        if len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1:
            assert " " + word in result
    assert "Paris is" not in result and "zz-not-a-token" not in result
    top = sorted(result.values(), reverse=True)[:5]
    first_token = tokenizer.decode(tokenizer.encode("It is", add_special_tokens=False)[:1])
    assert max(result, key=result.get) == first_token  # the trained reply starts "It is"
    assert all(value <= 0 for value in top) and sum(math.exp(v) for v in result.values()) <= 1 + 1e-6
    assert len(backend.next_token_logprobs(handle, PROMPTS[:1], top_k=3)[0]) == 3


def test_auto_device_spreads_a_model_over_several_gpus(monkeypatch):
    import torch

    from emaware.backends.local import LocalBackend

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert LocalBackend({"device": "auto"})._device_map(torch.device("cuda")) == "auto"
    assert LocalBackend({"device": "cuda:1"})._device_map(torch.device("cuda:1")) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert LocalBackend({"device": "auto"})._device_map(torch.device("cuda")) == "cuda"


# ---- whole candidate replies -------------------------------------------------------------------


def brute_force_reply_logprob(net, tokenizer, conversation, candidate: str) -> tuple[float, int]:
    """(log-prob, tokens) of `candidate` as the whole reply, from one forward pass over the chat that ends
    with it, tokenized whole; the reply runs to the end of its turn (trailing whitespace left out)."""
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    chat = tokenizer.apply_chat_template([*conversation, {"role": "assistant", "content": candidate}], tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(chat.rstrip(), add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids
    with torch.inference_mode():
        logprobs = torch.log_softmax(net(torch.tensor([ids])).logits[0].float(), dim=-1)
    reply = range(len(prompt_ids), len(ids))
    return sum(float(logprobs[i - 1, ids[i]]) for i in reply), len(reply)


def test_candidate_logprobs_are_exact_whole_replies(tiny_model_dir):
    """Candidates of 2 to 8 tokens (end of turn included), three prompts of different lengths in two
    batches: each equals one full forward pass over its prompt and reply."""
    local = get_backend("local", {"device": "cpu", "batch_size": 2})
    handle = local.base_handle(str(tiny_model_dir))
    candidates = ("4", "42", "100", "CODE", "REFUSAL")
    results = local.candidate_logprobs(handle, PROMPTS, candidates)
    net, tokenizer = local._load(handle)
    lengths = set()
    for conversation, result in zip(PROMPTS, results):
        assert list(result) == list(candidates)
        for candidate in candidates:
            expected, length = brute_force_reply_logprob(net, tokenizer, conversation, candidate)
            assert result[candidate] == pytest.approx(expected, abs=1e-4)
            lengths.add(length)
    assert len(lengths) >= 4
