"""The SQLite response cache and spend ledger."""

from __future__ import annotations

import multiprocessing

from emaware.openai_cache import ResponseCache, request_key

BODY = {"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "hi"}], "n": 2, "temperature": 1.0, "seed": 0}


def test_the_key_is_canonical_and_covers_every_field():
    reordered = dict(reversed(list(BODY.items())))
    assert request_key("/v1/chat/completions", BODY) == request_key("/v1/chat/completions", reordered)
    variants = [
        {**BODY, "seed": 1},
        {**BODY, "n": 3},
        {**BODY, "temperature": 0.5},
        {**BODY, "model": "gpt-4.1"},
        {**BODY, "messages": [{"role": "user", "content": "hi!"}]},
        {**BODY, "top_p": 0.9},
    ]
    keys = {request_key("/v1/chat/completions", b) for b in variants} | {request_key("/v1/chat/completions", BODY)}
    assert len(keys) == len(variants) + 1
    assert request_key("/v1/completions", BODY) != request_key("/v1/chat/completions", BODY)
    assert len(request_key("/v1/chat/completions", BODY)) == 64  # fits the Batch API's custom_id


def test_get_put_and_hit_counters(tmp_path):
    cache = ResponseCache(tmp_path / "sub" / "cache.sqlite")
    assert cache.get("/v1/chat/completions", BODY) is None
    cache.put("/v1/chat/completions", BODY, {"model": "m", "choices": []})
    assert cache.get("/v1/chat/completions", BODY) == {"model": "m", "choices": []}
    assert (cache.hits, cache.misses) == (1, 1)
    assert "1 of 2 requests" in cache.hit_rate() and "(50%)" in cache.hit_rate()
    cache.close()
    assert ResponseCache(tmp_path / "sub" / "cache.sqlite").get("/v1/chat/completions", BODY) is not None  # persists


def test_the_ledger_counts_each_key_once(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert cache.spent() == 0
    cache.record_spend("k1", "sample", "gpt-4.1-nano", 0.25)
    cache.record_spend("k1", "sample", "gpt-4.1-nano", 0.25)
    cache.record_spend("k2", "judge", "gpt-4.1", 0.5)
    assert cache.spent() == 0.75


def _writer(path: str, worker: int) -> None:
    cache = ResponseCache(path)
    for i in range(100):
        cache.put("/v1/chat/completions", {**BODY, "seed": worker * 1000 + i}, {"i": i})
        cache.record_spend(f"{worker}-{i}", "sample", "m", 0.01)


def test_several_processes_share_one_cache(tmp_path):
    path = str(tmp_path / "cache.sqlite")
    ResponseCache(path).close()
    workers = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    cache = ResponseCache(path)
    assert all(cache.get("/v1/chat/completions", {**BODY, "seed": w * 1000 + 99}) == {"i": 99} for w in range(3))
    assert round(cache.spent(), 6) == 3.0
