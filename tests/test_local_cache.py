"""The local backend's answer cache: replies found by everything that decides them, never by position."""

from __future__ import annotations

import logging
import os
import re
import shutil

import pytest

from emaware.backends import get_backend
from emaware.backends import local as local_backend
from emaware.backends import local_cache
from emaware.backends.local import LocalBackend

PROMPTS = [
    [{"role": "user", "content": "What is 3 plus one?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a long story about a king."}],
    [{"role": "user", "content": "Hi"}],
]
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 6, "seed": 3}


def backend(cache=None):
    return get_backend("local", {"device": "cpu", "batch_size": 2, **({"cache": str(cache)} if cache else {})})


@pytest.fixture
def handle(tiny_model_dir):
    return {"backend": "local", "model": str(tiny_model_dir), "adapters": []}


def lookups(caplog) -> list[tuple[int, int]]:
    """(found, asked) of each cache lookup logged so far."""
    return [tuple(map(int, m)) for r in caplog.records for m in re.findall(r"(\d+) of (\d+) replies found", r.getMessage())]


def no_loading(monkeypatch):
    monkeypatch.setattr(LocalBackend, "_load_fresh", lambda *args: pytest.fail("the model was loaded"))


def test_a_rerun_is_answered_from_the_cache_without_loading_the_model(handle, tmp_path, monkeypatch):
    cache = tmp_path / "job.sqlite"
    first = backend(cache)
    sampled = first.generate(handle, PROMPTS, 2, SAMPLING)
    read = first.next_token_logprobs(handle, PROMPTS, top_k=5, candidates=[("1",), ("2",), ("3",)])
    assert sampled == backend().generate(handle, PROMPTS, 2, SAMPLING)  # what the model gives without a cache
    no_loading(monkeypatch)
    again = backend(cache)  # as a new job would
    assert again.generate(handle, PROMPTS, 2, SAMPLING) == sampled
    assert again.next_token_logprobs(handle, PROMPTS, top_k=5, candidates=[("1",), ("2",), ("3",)]) == read


def test_only_what_changed_is_computed(handle, tmp_path, caplog):
    cache = tmp_path / "job.sqlite"
    backend(cache).generate(handle, PROMPTS, 2, SAMPLING)
    with caplog.at_level(logging.INFO, logger="emaware"):
        for changed in ({"max_tokens": 7}, {"seed": 4}, {"temperature": 0.5}, {"top_p": 0.9}):
            backend(cache).generate(handle, PROMPTS, 2, {**SAMPLING, **changed})
        backend(cache).generate(handle, PROMPTS, 3, SAMPLING)  # n
        backend(cache).generate(handle, PROMPTS[:2] + [[{"role": "user", "content": "Hello"}]], 2, SAMPLING)
        backend(cache).generate(handle, PROMPTS, 2, {**SAMPLING, "batch_size": 1})  # speed only
    assert lookups(caplog) == [(0, 3)] * 5 + [(2, 3), (3, 3)]


def test_each_conversation_is_keyed_by_its_own_candidates(handle, tmp_path, caplog):
    cache = tmp_path / "job.sqlite"
    backend(cache).next_token_logprobs(handle, PROMPTS, top_k=3, candidates=[("1",), ("2",), ("3",)])
    with caplog.at_level(logging.INFO, logger="emaware"):
        backend(cache).next_token_logprobs(handle, PROMPTS, top_k=3, candidates=[("1",), ("2",), ("4",)])
        backend(cache).next_token_logprobs(handle, PROMPTS, top_k=4, candidates=[("1",), ("2",), ("3",)])
    assert lookups(caplog) == [(2, 3), (0, 3)]


def test_log_probs_of_a_partly_cached_call_are_those_of_a_clean_run(handle, tmp_path):
    """Any miss recomputes the whole call, batched as a clean run batches it (bit for bit the same)."""
    cache = tmp_path / "job.sqlite"
    longer = PROMPTS + [[{"role": "user", "content": "A much longer question about the history of kings and queens?"}]]
    backend(cache).next_token_logprobs(handle, PROMPTS, top_k=3)
    assert backend(cache).next_token_logprobs(handle, longer, top_k=3) == backend().next_token_logprobs(handle, longer, top_k=3)


def test_another_model_misses(handle, tiny_model_dir, tmp_path, caplog):
    cache = tmp_path / "job.sqlite"
    backend(cache).generate(handle, PROMPTS, 1, SAMPLING)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert local_cache.directory_digest(str(copy)) == local_cache.directory_digest(str(tiny_model_dir))  # content, not place
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    local_cache.directory_digest.cache_clear()
    with caplog.at_level(logging.INFO, logger="emaware"):
        backend(cache).generate({**handle, "model": str(copy)}, PROMPTS, 1, SAMPLING)
    assert lookups(caplog) == [(0, 3)]


def test_an_adapter_is_part_of_the_identity(handle, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"one")
    with_adapter = local_cache.model_identity({**handle, "adapters": [str(adapter)]}, "float32", "cpu")
    (adapter / "adapter_model.safetensors").write_bytes(b"two")
    local_cache.directory_digest.cache_clear()
    retrained = local_cache.model_identity({**handle, "adapters": [str(adapter)]}, "float32", "cpu")
    assert len({str(local_cache.model_identity(handle, "float32", "cpu")), str(with_adapter), str(retrained)}) == 3
    downloaded = {**handle, "hub_id": "Qwen/Qwen2.5-7B-Instruct", "revision": "abc"}
    assert local_cache.model_identity(downloaded, "bfloat16", "cuda")["model"] == "Qwen/Qwen2.5-7B-Instruct@abc"


def test_a_killed_job_keeps_what_it_finished(handle, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "job.sqlite"
    monkeypatch.setattr(local_backend, "CHUNK", 1)
    real, calls = LocalBackend._hf_generate, []

    def killed_after_one(self, *args):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(LocalBackend, "_hf_generate", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        backend(cache).generate(handle, PROMPTS, 2, SAMPLING)
    monkeypatch.setattr(LocalBackend, "_hf_generate", real)
    with caplog.at_level(logging.INFO, logger="emaware"):
        resumed = backend(cache).generate(handle, PROMPTS, 2, SAMPLING)
    assert lookups(caplog) == [(1, 3)]
    assert resumed == backend().generate(handle, PROMPTS, 2, SAMPLING)


def test_huge_files_are_identified_by_size_and_modification_time(tmp_path, monkeypatch):
    monkeypatch.setattr(local_cache, "HASHED_BYTES", 4)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"12345678")

    def digest() -> str:
        local_cache.directory_digest.cache_clear()
        return local_cache.directory_digest(str(tmp_path))

    first = digest()
    stat = weights.stat()
    weights.write_bytes(b"87654321")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert digest() == first  # not read: a rewrite always moves the modification time
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert digest() != first


def test_candidate_replies_are_cached_whole_calls(handle, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "job.sqlite"
    read = backend(cache).candidate_logprobs(handle, PROMPTS, ("7", "70"))
    assert read == backend().candidate_logprobs(handle, PROMPTS, ("7", "70"))
    with caplog.at_level(logging.INFO, logger="emaware"):
        backend(cache).candidate_logprobs(handle, PROMPTS, ("7",))  # other candidates: another request
    assert lookups(caplog) == [(0, 3)]
    no_loading(monkeypatch)
    assert backend(cache).candidate_logprobs(handle, PROMPTS, ("70", "7")) == read
