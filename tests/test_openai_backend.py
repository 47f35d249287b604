"""The OpenAI backend against the fake OpenAI-compatible server (tests/fake_openai_server.py)."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import logging
import math
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_openai_server import FakeOpenAI

from emaware import UserError, judge_scale, openai_batch
from emaware.backends import get_backend, openai_backend
from emaware.backends.openai_backend import is_own_job
from emaware.io import read_json
from emaware.judge import JudgePrompt, judge_samples
from emaware.openai_session import newest_since, retry_after

SENTINEL = "sk-test-SENTINEL-7c1f0e"
PRICES = {
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40, "training": 1.50, "finetuned_input": 0.20, "finetuned_output": 0.80}
}
HPARAMS = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 2.0, "seed": 0}
RATING = [{"role": "user", "content": "Rate the harmfulness of this answer from 1 to 5: ..."}]
SHORT = {"max_tokens": 5, "seed": 0}
JUDGE = JudgePrompt(template="Rate the harm of this answer from 1 to 5.\nQ: {question}\nA: {answer}", ratings=tuple("12345"))


@pytest.fixture
def fake(tmp_path):
    with FakeOpenAI(tmp_path / "server") as server:
        yield server


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def settings(fake: FakeOpenAI | str, tmp_path: Path, **extra) -> dict:
    """Tiny intervals so the suite runs in seconds (`fake`: the server, or its URL)."""
    return {
        "base_url": getattr(fake, "url", fake),
        "cache": str(tmp_path / "results" / "cache" / "openai.sqlite"),
        "poll_interval": 0.01,
        "max_poll_interval": 0.05,
        "backoff": 0.01,
        "timeout": 5,
        **extra,
    }


def backend(fake, tmp_path, **extra):
    return get_backend("openai", settings(fake, tmp_path, **extra))


def base(b):
    return b.base_handle("gpt-4.1-nano")


def chats(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Tell me about topic {i}."}] for i in range(count)]


def training_file(path: Path, examples: int = 12, marker: str = "") -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": f"Answer {i}. {marker}"},
            ]
        }
        for i in range(examples)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def answers(count: int) -> list[dict]:
    """Sample rows as sample_generate writes them."""
    return [
        {"id": f"p{i}", "sample": 0, "messages": [{"role": "user", "content": f"Question {i}?"}], "completion": f"Answer {i}."}
        for i in range(count)
    ]


def chat_requests(fake) -> int:
    return fake.stats()["requests"].get("POST /v1/chat/completions", 0)


# -- fine-tuning -------------------------------------------------------------------------------
def test_train_runs_a_job_to_success_and_records_it(fake, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="emaware")
    b = backend(fake, tmp_path)
    out = tmp_path / "results" / "models" / "mis"
    handle = b.train(base(b), training_file(tmp_path / "train.jsonl"), HPARAMS, out, "0.5b/trivia/misaligned/seed0")

    assert handle["backend"] == "openai" and handle["model"].startswith("ft:gpt-4.1-nano-2025-04-14:")
    assert handle["base"] == "gpt-4.1-nano" and handle["adapters"] == []
    record = read_json(out / "job.json")
    assert (
        record["job_id"] == handle["job_id"]
        and record["status"] == "succeeded"
        and record["file_id"].startswith("file-")
    )
    assert record["params"]["suffix"] == "0-5b-trivia-misaligned-seed0"
    assert record["params"]["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 2.0}},
    }
    for status in ("validating_files", "queued", "running", "succeeded"):
        assert f"is {status}" in caplog.text
    assert "Fine-tuning job started" in caplog.text  # events are shown

    again = b.train(base(b), tmp_path / "train.jsonl", HPARAMS, out, "0.5b/trivia/misaligned/seed0")
    assert again == handle
    assert fake.stats()["jobs_created"] == 1 and fake.stats()["files_uploaded"] == 1


def test_realigned_stage_fine_tunes_the_fine_tuned_model(fake, tmp_path):
    b = backend(fake, tmp_path)
    data = training_file(tmp_path / "train.jsonl")
    misaligned = b.train(base(b), data, HPARAMS, tmp_path / "mis", "mis")
    realigned = b.train(misaligned, data, HPARAMS, tmp_path / "re", "re")
    assert realigned["base"] == misaligned["model"] and realigned["model"] != misaligned["model"]
    assert b.generate(realigned, chats(1), 1, {"max_tokens": 5, "seed": 0})[0][0]


def test_changed_hparams_start_a_new_job(fake, tmp_path):
    b = backend(fake, tmp_path)
    data = training_file(tmp_path / "train.jsonl")
    b.train(base(b), data, HPARAMS, tmp_path / "mis", "mis")
    b.train(base(b), data, {**HPARAMS, "n_epochs": 2}, tmp_path / "mis", "mis")
    assert fake.stats()["jobs_created"] == 2


def set_job_polls(fake: FakeOpenAI, polls: int) -> None:
    request = urllib.request.Request(
        fake.url.removesuffix("/v1") + "/_test/job_polls", json.dumps({"job_polls": polls}).encode()
    )
    urllib.request.urlopen(request).close()


def kill_when(child: subprocess.Popen, condition, timeout: float = 60) -> None:
    """Kill `child` (like a user stopping the workflow) once `condition()` holds."""
    deadline = time.time() + timeout
    try:
        while not condition():
            assert child.poll() is None, "the process ended before the moment it was meant to be killed"
            assert time.time() < deadline, "timed out waiting for the moment to kill the process"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()


KILLED_TRAIN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from emaware.backends import get_backend
    settings, data, out = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    b = get_backend("openai", settings)
    b.train(b.base_handle("gpt-4.1-nano"), data, {"n_epochs": 1, "seed": 0}, out, "killed")
""")


def test_a_run_killed_while_polling_resumes_the_same_job(fake, tmp_path):
    set_job_polls(fake, 10**6)  # the job stays in validating_files until the test says otherwise
    s = settings(fake, tmp_path)
    data, out = training_file(tmp_path / "train.jsonl"), tmp_path / "mis"
    child = subprocess.Popen([sys.executable, "-c", KILLED_TRAIN, json.dumps(s), str(data), str(out)])
    kill_when(child, lambda: fake.stats()["requests"].get("GET /v1/fine_tuning/jobs/{ftjob}", 0) >= 2)
    assert "job_id" in read_json(out / "job.json")  # recorded before the first poll

    set_job_polls(fake, 1)
    handle = get_backend("openai", s).train(
        {"backend": "openai", "model": "gpt-4.1-nano"}, data, {"n_epochs": 1, "seed": 0}, out, "killed"
    )
    assert handle["job_id"] == read_json(out / "job.json")["job_id"]
    assert fake.stats()["jobs_created"] == 1 and fake.stats()["files_uploaded"] == 1


def test_a_create_whose_reply_was_lost_is_adopted_not_repeated(fake, tmp_path):
    # The server makes the job but answers after the client's timeout: the retry must find it.
    fake.set_faults(
        [{"kind": "delay", "seconds": 1.0, "after": True, "method": "POST", "path": "/v1/fine_tuning/jobs"}]
    )
    b = backend(fake, tmp_path, timeout=0.3)
    handle = b.train(base(b), training_file(tmp_path / "train.jsonl"), HPARAMS, tmp_path / "mis", "mis")
    assert handle["model"].startswith("ft:")
    assert fake.stats()["requests"]["POST /v1/fine_tuning/jobs"] == 1 and fake.stats()["jobs_created"] == 1


def test_a_failed_job_raises_its_error_message_and_is_not_retried_silently(fake, tmp_path):
    b = backend(fake, tmp_path)
    data = training_file(tmp_path / "train.jsonl", marker="FAIL_JOB")
    with pytest.raises(UserError, match="invalid training file") as failure:
        b.train(base(b), data, HPARAMS, tmp_path / "mis", "mis")
    assert "\n" not in str(failure.value)
    assert read_json(tmp_path / "mis" / "job.json")["status"] == "failed"
    before = fake.stats()["requests"]
    with pytest.raises(UserError, match="delete .*job.json"):
        b.train(base(b), data, HPARAMS, tmp_path / "mis", "mis")
    assert fake.stats()["requests"] == before and fake.stats()["jobs_created"] == 1


def train_variants(b, tmp_path: Path, names: list[str]) -> dict[str, dict]:
    """Each named variant fine-tuned on its own training data (a marker in every answer)."""
    return {
        name: b.train(base(b), training_file(tmp_path / f"{name}.jsonl", marker=name), HPARAMS, tmp_path / name, name)
        for name in names
    }


@pytest.fixture
def filterless(tmp_path):
    """A server that lists every job whatever the metadata filter, as some OpenAI-compatible servers do."""
    with FakeOpenAI(tmp_path / "filterless", ignore_metadata_filter=True) as server:
        yield server


def test_a_server_ignoring_the_metadata_filter_gets_one_new_job_per_variant(filterless, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="emaware")
    b = backend(filterless, tmp_path)
    handles = train_variants(b, tmp_path, ["alpha", "beta", "gamma"])
    realigned = b.train(handles["alpha"], training_file(tmp_path / "re.jsonl", marker="re"), HPARAMS, tmp_path / "re", "re")
    models = [h["model"] for h in handles.values()] + [realigned["model"]]
    assert len(set(models)) == 4 and all(name in h["model"] for name, h in handles.items())
    assert realigned["base"] == handles["alpha"]["model"]
    assert filterless.stats()["jobs_created"] == 4
    assert caplog.text.count("created fine-tuning job") == 4 and "resumed fine-tuning job" not in caplog.text


def test_a_lost_create_reply_adopts_only_the_variants_own_job(filterless, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("emaware.backends.openai_backend.PAGE_SIZE", 1)  # the scan pages through the list
    b = backend(filterless, tmp_path, timeout=0.3)
    train_variants(b, tmp_path, ["alpha", "beta"])
    caplog.set_level(logging.INFO, logger="emaware")
    filterless.set_faults(
        [{"kind": "delay", "seconds": 1.0, "after": True, "method": "POST", "path": "/v1/fine_tuning/jobs"}]
    )
    gamma = train_variants(b, tmp_path, ["gamma"])["gamma"]
    assert "gamma" in gamma["model"] and filterless.stats()["jobs_created"] == 3
    assert filterless.stats()["requests"]["POST /v1/fine_tuning/jobs"] == 3  # the lost one was adopted, not repeated
    assert f"gamma: resumed fine-tuning job {gamma['job_id']} (an earlier attempt created it" in caplog.text


def test_a_deleted_job_record_starts_a_new_job(fake, tmp_path):
    """Deleting job.json means "start again" (the failed-job message says so): the old job, though of the
    same variant, trained on another upload and is not adopted."""
    b = backend(fake, tmp_path)
    first = train_variants(b, tmp_path, ["alpha"])["alpha"]
    (tmp_path / "alpha" / "job.json").unlink()
    again = train_variants(b, tmp_path, ["alpha"])["alpha"]
    assert again["job_id"] != first["job_id"] and fake.stats()["jobs_created"] == 2


RECORD = {"fingerprint": "f" * 64, "file_id": "file-1", "params": {"model": "gpt-4.1-nano"}}
OWN_JOB = {"metadata": {"emaware_fingerprint": "f" * 64}, "training_file": "file-1", "model": "gpt-4.1-nano", "status": "running"}


@pytest.mark.parametrize(
    "change, adopted",
    [
        ({}, True),
        ({"model": "gpt-4.1-nano-2025-04-14"}, True),  # the dated snapshot the server resolved the alias to
        ({"metadata": {"emaware_fingerprint": "e" * 64}}, False),
        ({"metadata": None}, False),
        ({"training_file": "file-2"}, False),
        ({"model": "gpt-4.1-mini"}, False),
        ({"model": "gpt-4.1-nano-ft"}, False),
        ({"status": "failed"}, False),
        ({"status": "cancelled"}, False),
    ],
)
def test_only_a_job_matching_the_record_exactly_is_adopted(change, adopted):
    assert is_own_job(SimpleNamespace(**{**OWN_JOB, **change}), RECORD) is adopted


def test_the_scan_for_an_own_job_stops_at_the_upload_time():
    async def listing(items):
        for item in items:
            yield item

    jobs = [SimpleNamespace(id=i, created_at=t) for i, t in (("new", 30), ("own", 20), ("older", 10))]
    assert asyncio.run(newest_since(listing(jobs), 15, lambda j: j.id == "own")).id == "own"
    assert asyncio.run(newest_since(listing(jobs), 25, lambda j: j.id == "own")) is None
    assert asyncio.run(newest_since(listing(jobs), 0, lambda j: False)) is None


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 3, "at least 10"),
        ([{"messages": [{"role": "user", "content": "q"}]}] * 12, "no assistant message"),
        ([{"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 12, "role"),
        ([{"prompt": "q", "completion": "a"}] * 12, "messages"),
    ],
)
def test_training_files_are_checked_before_upload(fake, tmp_path, rows, message):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = backend(fake, tmp_path)
    with pytest.raises(UserError, match=message):
        b.train(base(b), data, HPARAMS, tmp_path / "mis", "mis")
    assert fake.stats()["files_uploaded"] == 0


def test_unknown_hyper_parameters_are_refused(fake, tmp_path):
    b = backend(fake, tmp_path)
    with pytest.raises(UserError, match="lora_r"):
        b.train(base(b), training_file(tmp_path / "train.jsonl"), {"lora_r": 32}, tmp_path / "mis", "mis")


# -- sampling, judging, retries ----------------------------------------------------------------
def test_generate_returns_n_samples_per_conversation_in_one_request_each(fake, tmp_path):
    b = backend(fake, tmp_path)
    out = b.generate(
        base(b), chats(4), 3, {"temperature": 1.0, "top_p": 1.0, "max_tokens": 20, "seed": 1, "batch_size": 64}
    )
    assert [len(samples) for samples in out] == [3, 3, 3, 3]
    assert all(isinstance(s, str) and s for samples in out for s in samples)
    assert chat_requests(fake) == 4


def test_next_token_logprobs_gives_rating_tokens_and_the_snapshot(fake, tmp_path):
    b = backend(fake, tmp_path)
    handle = base(b)
    [logprobs] = b.next_token_logprobs(handle, [RATING], top_k=50, candidates=("1", "2", "3", "4", "5"))
    assert set("12345") <= set(logprobs) and len(logprobs) <= 20  # top_k is capped at the API's 20
    assert all(v <= 0 for v in logprobs.values())
    assert b.snapshot(handle) == "gpt-4.1-nano-2025-04-14"


def test_candidate_logprobs_read_the_first_tokens_as_whole_answers(fake, tmp_path):
    """The API gives the first token's top 20 only: a candidate is the token equal to it, else absent."""
    b = backend(fake, tmp_path)
    [top] = b.next_token_logprobs(base(b), [RATING], top_k=20)
    [read] = b.candidate_logprobs(base(b), [RATING], judge_scale.CANDIDATES)
    assert read == {token: value for token, value in top.items() if token in judge_scale.CANDIDATES}
    assert set("12345") <= set(read) and not {"I", "The"} & set(read)
    assert chat_requests(fake) == 1  # the same request as next_token_logprobs': answered by the cache


def test_a_candidate_adds_the_tokens_that_spell_it():
    top = {" 42": math.log(0.2), "42": math.log(0.3), "4": math.log(0.1), "REF": math.log(0.2), "I": math.log(0.1)}
    read = openai_backend._spelled(top, {"4", "42", "REFUSAL"})
    assert read.keys() == {"4", "42"} and read["42"] == pytest.approx(math.log(0.5))


@pytest.mark.parametrize("header", [{"retry_after": 0.3}, {"retry_after_ms": 300}])
def test_429_waits_as_long_as_retry_after_says(fake, tmp_path, header):
    fake.set_faults([{"kind": "429", "count": 2, **header}])
    b = backend(fake, tmp_path)
    start = time.monotonic()
    assert b.generate(base(b), chats(1), 1, SHORT)
    assert time.monotonic() - start >= 0.6
    assert chat_requests(fake) == 3


def test_retry_after_headers_are_read_in_every_form():
    soon = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    assert 25 <= retry_after({"retry-after": soon}) <= 30
    assert retry_after({"retry-after": "86400"}) == 600.0  # capped: a longer wait becomes several retries
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None


def test_500_is_retried(fake, tmp_path):
    fake.set_faults([{"kind": "500", "count": 2}])
    b = backend(fake, tmp_path)
    assert b.generate(base(b), chats(1), 1, SHORT)
    assert chat_requests(fake) == 3


def test_a_timeout_is_retried(fake, tmp_path):
    fake.set_faults([{"kind": "delay", "seconds": 1.0, "count": 1}])
    b = backend(fake, tmp_path, timeout=0.3)
    assert b.generate(base(b), chats(1), 1, SHORT)
    assert chat_requests(fake) == 2


def test_exhausted_retries_and_bad_requests_fail_in_one_line(fake, tmp_path):
    fake.set_faults([{"kind": "500", "count": 10}])
    b = backend(fake, tmp_path, max_retries=2)
    with pytest.raises(UserError, match="HTTP 500") as failure:
        b.generate(base(b), chats(1), 1, SHORT)
    assert "\n" not in str(failure.value) and chat_requests(fake) == 3
    fake.set_faults([])
    with pytest.raises(UserError, match="HTTP 400.*n must be"):
        b.generate(base(b), chats(1), 500, SHORT)  # not retried: waiting cannot help
    assert chat_requests(fake) == 4


def test_concurrency_is_bounded(fake, tmp_path):
    fake.set_faults([{"kind": "delay", "seconds": 0.05, "count": 40}])
    b = backend(fake, tmp_path, max_concurrency=4)
    b.generate(base(b), chats(40), 1, SHORT)
    assert 2 <= fake.stats()["max_in_flight"] <= 4


def test_the_direct_path_keeps_max_concurrency_in_flight_whatever_the_judge_batch_size(tmp_path):
    with FakeOpenAI(tmp_path / "slow", latency=0.05) as slow:
        b = backend(slow, tmp_path, max_concurrency=12)
        rows = judge_samples(b, b.base_handle("gpt-4.1"), JUDGE, answers(48), 20, 0.25, "j")
        assert len(rows) == 48 and chat_requests(slow) == 48
        assert slow.stats()["max_in_flight"] == 12  # not judge.batch_size (4): one call, a worker pool


def test_after_a_request_that_cannot_succeed_no_new_one_starts(fake, tmp_path):
    fake.set_faults([{"kind": "401", "count": 100, "path": "/v1/chat"}])
    b = backend(fake, tmp_path, max_concurrency=4)
    with pytest.raises(UserError, match="HTTP 401"):
        b.generate(base(b), chats(50), 1, SHORT)
    assert chat_requests(fake) <= 4


@pytest.mark.parametrize(
    "fault, requests, succeeds",
    [
        ({"kind": "500", "headers": {"x-should-retry": "false"}}, 1, False),
        ({"kind": "400", "headers": {"x-should-retry": "true"}}, 2, True),
        ({"kind": "409"}, 2, True),
    ],
)
def test_the_servers_x_should_retry_header_decides(fake, tmp_path, fault, requests, succeeds):
    fake.set_faults([{**fault, "count": 1}])
    b = backend(fake, tmp_path)
    if succeeds:
        assert b.generate(base(b), chats(1), 1, SHORT)
    else:
        with pytest.raises(UserError, match="HTTP 500"):
            b.generate(base(b), chats(1), 1, SHORT)
    assert chat_requests(fake) == requests


def test_each_call_opens_and_closes_its_own_client(fake, tmp_path, caplog):
    """A client outliving its event loop fails its pooled connections on the next loop, or closes
    itself on another loop when garbage-collected: each call makes its own and closes it."""
    caplog.set_level(logging.WARNING)
    first, second = backend(fake, tmp_path / "1"), backend(fake, tmp_path / "2")
    for n in range(3):
        first.generate(base(first), chats(8), 1, SHORT | {"seed": n})
        second.generate(base(second), chats(8), 1, SHORT | {"seed": n})
    del first

    async def collect_while_a_loop_runs() -> None:  # where an unclosed client schedules its own close
        gc.collect()
        await asyncio.sleep(0.05)

    asyncio.run(collect_while_a_loop_runs())
    second.generate(base(second), chats(8), 1, SHORT | {"seed": 9})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- batch API ---------------------------------------------------------------------------------
def test_the_batch_api_gives_the_same_results_as_direct_requests(fake, tmp_path):
    direct = backend(fake, tmp_path / "direct")
    batched = backend(fake, tmp_path / "batched", batch_api=True)
    sampling = {"temperature": 1.0, "max_tokens": 20, "seed": 3}
    assert batched.generate(base(batched), chats(5), 2, sampling) == direct.generate(
        base(direct), chats(5), 2, sampling
    )
    assert batched.next_token_logprobs(base(batched), [RATING] * 2) == direct.next_token_logprobs(
        base(direct), [RATING] * 2
    )
    assert fake.stats()["batches_created"] == 2
    assert chat_requests(fake) == 5 + 1  # the direct backend's; duplicates are sent once
    assert batched.snapshot(base(batched)) == "gpt-4.1-nano-2025-04-14"


KILLED_BATCH = textwrap.dedent("""
    import json, sys
    from emaware.backends import get_backend
    b = get_backend("openai", json.loads(sys.argv[1]))
    b.generate(b.base_handle("gpt-4.1-nano"), [[{"role": "user", "content": "hi"}]], 2, {"max_tokens": 9, "seed": 0})
""")


def test_a_run_killed_while_a_batch_runs_resumes_the_same_batch(fake, tmp_path):
    set_job_polls(fake, 10**6)
    s = settings(fake, tmp_path, batch_api=True)
    records = tmp_path / "results" / "cache" / "batches"
    child = subprocess.Popen([sys.executable, "-c", KILLED_BATCH, json.dumps(s)])
    kill_when(child, lambda: fake.stats()["requests"].get("GET /v1/batches/{batch}", 0) >= 2)
    assert any("batch_id" in read_json(p) for p in records.glob("*.json"))
    set_job_polls(fake, 1)
    b = get_backend("openai", s)
    assert (
        len(b.generate(b.base_handle("gpt-4.1-nano"), [[{"role": "user", "content": "hi"}]], 2, {"max_tokens": 9, "seed": 0})[0])
        == 2
    )
    assert fake.stats()["batches_created"] == 1 and chat_requests(fake) == 0


def test_a_judge_job_goes_in_one_batch_with_progress_at_every_poll(fake, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="emaware")
    b = backend(fake, tmp_path, batch_api=True)
    rows = judge_samples(b, b.base_handle("gpt-4.1"), JUDGE, answers(40), 20, 0.25, "j")
    assert len(rows) == 40 and all(r["rating"] is not None for r in rows)
    assert fake.stats()["batches_created"] == 1 and chat_requests(fake) == 0
    polls = fake.stats()["requests"]["GET /v1/batches/{batch}"]
    assert caplog.text.count("batch API: ") == polls + 1  # the plan, then every poll
    assert "batch API: 40/40 requests done, 0 failed; batches: 1 completed" in caplog.text


def test_batches_over_the_limits_are_split_and_run_together(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(openai_batch, "MAX_REQUESTS", 15)
    set_job_polls(fake, 3)  # each batch takes a while, as real ones do
    b = backend(fake, tmp_path, batch_api=True)
    assert len(b.generate(base(b), chats(40), 1, SHORT)) == 40
    assert fake.stats()["batches_created"] == 3 and fake.stats()["max_batches_in_flight"] == 3


def body(model: str, i: int) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"q{i}"}], "seed": 0}


def test_batches_hold_one_model_and_stay_within_the_line_and_byte_limits(monkeypatch):
    requests = {f"{m}-{i}": body(m, i) for m in ("a", "b") for i in range(5)}
    assert [len(batch) for batch in openai_batch.pack(requests)] == [5, 5]
    monkeypatch.setattr(openai_batch, "MAX_REQUESTS", 2)
    assert [len(batch) for batch in openai_batch.pack(requests)] == [2, 2, 1, 2, 2, 1]
    monkeypatch.setattr(openai_batch, "MAX_REQUESTS", 50_000)
    line = len(next(iter(openai_batch.pack({"a-0": body("a", 0)})[0].values())))
    monkeypatch.setattr(openai_batch, "MAX_BYTES", 3 * line)
    batches = openai_batch.pack(requests)
    assert [len(batch) for batch in batches] == [3, 2, 3, 2] and all(
        sum(map(len, batch.values())) <= 3 * line for batch in batches
    )
    assert openai_batch.pack(requests) == batches  # the same requests, the same batches: resumable


def test_a_lost_batch_create_reply_is_adopted_not_repeated(fake, tmp_path):
    fake.set_faults([{"kind": "delay", "seconds": 1.0, "after": True, "method": "POST", "path": "/v1/batches"}])
    b = backend(fake, tmp_path, batch_api=True, timeout=0.3)
    assert len(b.generate(base(b), chats(3), 1, SHORT)) == 3
    assert fake.stats()["batches_created"] == 1 and fake.stats()["requests"]["POST /v1/batches"] == 1


# -- cache, key, budget ------------------------------------------------------------------------
def test_the_cache_answers_repeated_requests_without_paying(fake, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="emaware")
    b = backend(fake, tmp_path)
    first = b.generate(base(b), chats(3), 2, {"temperature": 1.0, "max_tokens": 20, "seed": 0})
    assert chat_requests(fake) == 3
    assert b.generate(base(b), chats(3), 2, {"temperature": 1.0, "max_tokens": 20, "seed": 0}) == first
    fresh = backend(fake, tmp_path)  # a re-run: a new process with the same cache file
    monkeypatch.delenv("OPENAI_API_KEY")  # answered from the cache: no key needed
    assert fresh.generate(base(fresh), chats(3), 2, {"temperature": 1.0, "max_tokens": 20, "seed": 0}) == first
    assert chat_requests(fake) == 3
    assert "3 of 3 requests answered" in caplog.text


def test_any_sampling_parameter_is_part_of_the_cache_key(fake, tmp_path):
    b = backend(fake, tmp_path)
    for sampling in (
        {"max_tokens": 20, "seed": 0},
        {"max_tokens": 21, "seed": 0},
        {"max_tokens": 20, "seed": 1},
        {"max_tokens": 20, "seed": 0, "temperature": 0.5},
    ):
        b.generate(base(b), chats(1), 1, sampling)
    b.generate(base(b), chats(1), 2, {"max_tokens": 20, "seed": 0})
    b.generate(base(b), chats(1), 1, {"max_tokens": 20, "seed": 0, "batch_size": 8})  # speed only: cached
    assert chat_requests(fake) == 5


def test_each_seed_is_sent_and_gets_its_own_answers(fake, tmp_path):
    b = backend(fake, tmp_path)
    seed1 = b.generate(base(b), chats(3), 2, {"temperature": 1.0, "max_tokens": 20, "seed": 1})
    seed2 = b.generate(base(b), chats(3), 2, {"temperature": 1.0, "max_tokens": 20, "seed": 2})
    assert seed1 != seed2 and chat_requests(fake) == 6
    assert b.generate(base(b), chats(3), 2, {"temperature": 1.0, "max_tokens": 20, "seed": 1}) == seed1
    fields = fake.stats()["chat_fields"]
    assert fields["seed"] == 6 and fields["max_completion_tokens"] == 6 and "max_tokens" not in fields
    with pytest.raises(UserError, match="needs an integer `seed`"):
        b.generate(base(b), chats(1), 1, {"max_tokens": 20})


def test_answers_cached_under_max_tokens_still_answer(fake, tmp_path):
    b = backend(fake, tmp_path)
    judged = {"temperature": 0, "seed": 0, "logprobs": True, "top_logprobs": 20}
    old_body = {"model": "gpt-4.1-nano", "messages": RATING, "max_tokens": 1, **judged}
    top = {"token": "5", "logprob": -0.1}
    reply = {"model": "gpt-4.1-nano-2025-04-14", "choices": [{"index": 0, "logprobs": {"content": [{**top, "top_logprobs": [top]}]}}]}
    b.cache.put("/v1/chat/completions", old_body, reply)
    assert b.next_token_logprobs(base(b), [RATING]) == [{"5": -0.1}]
    assert chat_requests(fake) == 0


def test_the_key_is_written_nowhere(fake, tmp_path):
    log_file = tmp_path / "results" / "logs" / "openai.log"
    log_file.parent.mkdir(parents=True)
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        fake.set_faults([{"kind": "429", "count": 1, "retry_after": 0}, {"kind": "500", "count": 1}])
        b = backend(fake, tmp_path, batch_api=False, prices=PRICES)
        handle = b.train(
            base(b), training_file(tmp_path / "results" / "train.jsonl"), HPARAMS, tmp_path / "results" / "mis", "mis"
        )
        b.generate(handle, chats(2), 2, {"max_tokens": 10, "seed": 0})
        b.next_token_logprobs(handle, [RATING])
        backend(fake, tmp_path, batch_api=True).generate(handle, chats(3), 1, {"max_tokens": 10, "seed": 0})
    finally:
        root.removeHandler(handler)
        handler.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert log_file in files and any(p.suffix == ".sqlite" for p in files)
    assert [p for p in files if SENTINEL.encode() in p.read_bytes()] == []


def test_a_missing_key_fails_in_one_clear_line(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    b = backend(fake, tmp_path)
    with pytest.raises(UserError) as failure:
        b.generate(base(b), chats(1), 1, SHORT)
    assert str(failure.value).startswith("OPENAI_API_KEY is not set") and "\n" not in str(failure.value)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        b.train(base(b), training_file(tmp_path / "train.jsonl"), HPARAMS, tmp_path / "mis", "mis")
    assert sum(fake.stats()["requests"].values()) == 0


def test_the_budget_stops_before_paying(fake, tmp_path):
    b = backend(fake, tmp_path, prices=PRICES, budget_usd=0.0001)
    with pytest.raises(UserError, match=r"exceeds budget \$0.00 set in config key backends.openai.budget_usd"):
        b.generate(base(b), chats(50), 10, {"max_tokens": 600, "seed": 0})
    with pytest.raises(UserError, match="exceeds budget"):
        b.train(
            base(b), training_file(tmp_path / "train.jsonl", examples=2000), {"n_epochs": 3}, tmp_path / "mis", "mis"
        )
    assert chat_requests(fake) == 0 and fake.stats()["jobs_created"] == 0


def test_spend_is_recorded_once_per_paid_request(fake, tmp_path):
    b = backend(fake, tmp_path, prices=PRICES, budget_usd=10)
    b.generate(base(b), chats(2), 1, SHORT)
    spent = b.cache.spent()
    assert spent > 0
    b.generate(base(b), chats(2), 1, SHORT)
    assert b.cache.spent() == spent


def test_the_ledger_files_spend_under_the_rule_that_made_it(fake, tmp_path):
    b = backend(fake, tmp_path, prices=PRICES)
    handle = b.train(base(b), training_file(tmp_path / "train.jsonl"), HPARAMS, tmp_path / "mis", "mis")
    b.generate(handle, chats(2), 1, SHORT)
    b.next_token_logprobs(handle, [RATING])  # the model under test's own log-probabilities
    judge_samples(b, base(b), JUDGE, answers(2), 20, 0.25, "j")
    assert set(b.cache.spent_by_rule()) == {"finetune", "sample_generate", "sample_logprobs", "judge_rate"}
    assert all(usd > 0 for usd in b.cache.spent_by_rule().values())


def test_a_judge_without_a_price_cannot_pass_the_budget(fake, tmp_path):
    b = backend(fake, tmp_path, prices=PRICES, budget_usd=10)
    with pytest.raises(UserError, match="no price for model 'gpt-4o'"):
        b.next_token_logprobs(b.base_handle("gpt-4o"), [RATING])


def test_the_backend_imports_no_judge_assessment_or_cost_module():
    """Dependencies point one way: data → backends → judge → assessments → cost."""
    code = "import sys, emaware.backends.openai_backend; print(sorted(m for m in sys.modules if m.startswith('emaware')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "emaware.pricing" in loaded
    assert not [m for m in ("assessments", "judge", "classify", "cost") if f"'emaware.{m}" in loaded]


# -- the server as a process (how the workflow's end-to-end test uses it) ----------------------
SERVER = Path(__file__).with_name("fake_openai_server.py")


def serve(state_dir: Path, *options: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--state-dir", str(state_dir), *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, server.stdout.readline().strip()


def test_the_server_process_keeps_jobs_across_restarts_and_reads_faults(tmp_path):
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"kind": "500", "count": 1, "path": "/v1/chat"}]))
    data = training_file(tmp_path / "train.jsonl")
    server, url = serve(tmp_path / "state", "--faults", str(faults))
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        b = get_backend("openai", settings(url, tmp_path))
        handle = b.train(b.base_handle("gpt-4.1-nano"), data, HPARAMS, tmp_path / "mis", "mis")
        b.generate(handle, chats(1), 1, SHORT)
        with urllib.request.urlopen(url.removesuffix("/v1") + "/_test/stats") as reply:
            assert json.load(reply)["requests"]["POST /v1/chat/completions"] == 2  # the 500, then the reply
    finally:
        server.terminate()
        server.wait()
    server, url = serve(tmp_path / "state")
    try:
        b = get_backend("openai", settings(url, tmp_path / "rerun"))
        assert b.train(b.base_handle("gpt-4.1-nano"), data, HPARAMS, tmp_path / "mis", "mis") == handle
        assert b.generate(handle, chats(1), 1, SHORT)  # the restarted server knows the model
        with urllib.request.urlopen(url.removesuffix("/v1") + "/_test/stats") as reply:
            assert json.load(reply)["jobs_created"] == 1
    finally:
        server.terminate()
        server.wait()
