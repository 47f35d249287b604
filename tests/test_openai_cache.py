"""The SQLite response cache and spend ledger."""

from __future__ import annotations

import multiprocessing

import pytest

from emaware import openai_cache
from emaware.openai_cache import ResponseCache, filesystem_type, request_key

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


def test_the_ledger_counts_each_key_once_per_rule(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert cache.spent() == 0
    cache.record_spend("k1", "sample_generate", "gpt-4.1-nano", 0.25)
    cache.record_spend("k1", "sample_generate", "gpt-4.1-nano", 0.25)
    cache.record_spend("k2", "judge_rate", "gpt-4.1", 0.5)
    assert cache.spent() == 0.75
    assert cache.spent_by_rule() == {"judge_rate": 0.5, "sample_generate": 0.25}


def test_an_older_form_of_a_request_answers_from_the_cache(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    old = {**BODY, "max_tokens": 5}
    cache.put("/v1/chat/completions", old, {"i": 1})
    new = {**BODY, "max_completion_tokens": 5}
    assert cache.get("/v1/chat/completions", new) is None
    assert cache.get("/v1/chat/completions", new, None, old) == {"i": 1}
    assert (cache.hits, cache.misses) == (1, 1)


MOUNTS = """sysfs /sys sysfs rw 0 0
/dev/sda1 / ext4 rw,relatime 0 0
server:/export/home /home nfs4 rw,vers=4.2 0 0
lustre@tcp:/scratch /scratch/proj lustre rw 0 0
"""


def test_the_filesystem_of_a_path_is_read_from_the_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    assert filesystem_type(tmp_path, mounts) == "ext4"  # / : the longest mount point that holds it
    assert filesystem_type("/home/me/results/cache", mounts) == "nfs4"
    assert filesystem_type("/scratch/proj/x", mounts) == "lustre" and filesystem_type("/scratchy", mounts) == "ext4"


@pytest.mark.parametrize("filesystem, mode", [("ext4", "wal"), ("nfs4", "delete"), ("lustre", "delete")])
def test_on_a_network_filesystem_the_cache_does_not_use_wal(tmp_path, monkeypatch, caplog, filesystem, mode):
    """WAL needs memory shared by all processes using the file, which processes on cluster nodes lack."""
    monkeypatch.setattr(openai_cache, "filesystem_type", lambda path: filesystem)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    assert cache.journal_mode() == mode
    assert ("WAL does not work across hosts" in caplog.text) is (mode == "delete")
    cache.put("/v1/chat/completions", BODY, {"i": 1})
    assert ResponseCache(tmp_path / "cache.sqlite").get("/v1/chat/completions", BODY) == {"i": 1}


def _writer(path: str, worker: int, network: bool = False) -> None:
    if network:
        openai_cache.filesystem_type = lambda path: "nfs4"
    cache = ResponseCache(path)
    for i in range(100):
        cache.put("/v1/chat/completions", {**BODY, "seed": worker * 1000 + i}, {"i": i})
        cache.record_spend(f"{worker}-{i}", "sample", "m", 0.01)


@pytest.mark.parametrize("network", [False, True], ids=["wal", "rollback-journal"])
def test_several_processes_share_one_cache(tmp_path, network):
    path = str(tmp_path / "cache.sqlite")
    ResponseCache(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, network)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    cache = ResponseCache(path)
    assert all(cache.get("/v1/chat/completions", {**BODY, "seed": w * 1000 + 99}) == {"i": 99} for w in range(3))
    assert round(cache.spent(), 6) == 3.0
