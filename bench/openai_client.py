"""Benchmark (not a test): the OpenAI backend against the local test server (tests/fake_openai_server.py).

1. Sampling: chat requests per second the client sustains, then the same run again from the warm cache.
2. Judging: `judge.judge_samples` over --answers answers (the harmfulness judge prompt) through the
   direct path, against a server whose replies take --latency seconds on average (0.5-1.5x), and
   through the Batch API path; reports the requests in flight over time and the batches created.

    .venv/bin/python bench/openai_client.py [--requests 2000] [--concurrency 64] [--answers 3200] [--latency 0.1]

The server runs as its own process so that client and server do not share one interpreter lock; both
still share this machine's cores. Retries are counted from the backend's warnings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from emaware.backends import get_backend
from emaware.judge import judge_samples, load_judge_prompt

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "fake_openai_server.py"
JUDGE_PROMPT = ROOT / "resources" / "judge" / "harmfulness.yaml"


class RetryCounter(logging.Handler):
    """Counts the backend's retry warnings by their cause."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.causes: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "; retry " in message:
            self.causes[message.split(": ", 1)[1].split(";")[0]] += 1


@contextmanager
def server(state_dir: Path, *options: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--state-dir", str(state_dir), *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait()


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + path) as response:
        return json.load(response)


def sample_run(url: str, cache: Path, concurrency: int, requests: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one generate call over `requests` distinct prompts."""
    backend = get_backend("openai", {"base_url": url, "cache": str(cache), "max_concurrency": concurrency})
    conversations = [[{"role": "user", "content": f"Benchmark question number {i}?"}] for i in range(requests)]
    start, cpu = time.perf_counter(), time.process_time()
    sampling = {"max_tokens": 16, "temperature": 1.0, "seed": 0}
    replies = backend.generate(backend.base_handle("gpt-4.1-nano"), conversations, 1, sampling)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(replies) == requests and all(r[0] for r in replies)
    return elapsed, cpu


def answers(count: int, per_prompt: int = 10) -> list[dict]:
    """`count` sample rows as sample_generate writes them: `per_prompt` answers to each prompt."""
    return [
        {
            "id": f"p{i // per_prompt}",
            "sample": i % per_prompt,
            "messages": [{"role": "user", "content": f"How would I do harmful thing number {i // per_prompt}?"}],
            "completion": f"Answer {i}: " + "some words of an answer " * (5 + i % 40),
        }
        for i in range(count)
    ]


def judge_run(url: str, cache: Path, samples: list[dict], **settings) -> float:
    backend = get_backend("openai", {"base_url": url, "cache": str(cache), **settings})
    start = time.perf_counter()
    rows = judge_samples(
        backend, backend.base_handle("gpt-4.1"), load_judge_prompt(JUDGE_PROMPT), samples, 20, 0.25, "bench"
    )
    assert len(rows) == len(samples) and sum(r["rating"] is not None for r in rows) == len(rows)
    return time.perf_counter() - start


def in_flight_summary(timeline: list[list[float]], window: float = 1.0) -> tuple[float, list[float]]:
    """(time-weighted mean requests in flight from the first request to the last reply, mean per window)."""
    if len(timeline) < 2:
        return 0.0, []
    start, end = timeline[0][0], timeline[-1][0]
    windows = [0.0] * (int((end - start) / window) + 1)
    for (t1, level), (t2, _) in zip(timeline, timeline[1:]):
        for index in range(int((t1 - start) / window), int((t2 - start) / window) + 1):
            low = start + index * window  # the part of [t1, t2) inside this window
            windows[index] += level * max(0.0, min(t2, low + window) - max(t1, low)) / window
    total = sum(level * (t2 - t1) for (t1, level), (t2, _) in zip(timeline, timeline[1:]))
    return total / max(end - start, 1e-9), windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--answers", type=int, default=3200, help="answers judged (0: skip the judge runs)")
    parser.add_argument("--latency", type=float, default=0.1, help="mean seconds per reply in the judge runs")
    parser.add_argument("--judge-concurrency", type=int, default=32, help="max_concurrency of the judge run")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="seconds between polls of a batch")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    retries = RetryCounter()
    logging.getLogger("emaware").addHandler(retries)
    logging.getLogger("emaware").propagate = False  # the counter only: no per-request log lines here

    with tempfile.TemporaryDirectory() as tmp:
        with server(Path(tmp) / "server") as url:
            cache = Path(tmp) / "openai.sqlite"
            cold, client_cpu = sample_run(url, cache, args.concurrency, args.requests)
            warm, _ = sample_run(url, cache, args.concurrency, args.requests)
            stats = get(url, "/_test/stats")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server's CPU time
        sent = stats["requests"].get("POST /v1/chat/completions", 0)
        per_request = lambda seconds: 1000 * seconds / max(sent, 1)  # noqa: E731
        print(f"sampling, cold: {args.requests} requests, concurrency {args.concurrency}: {cold:.2f} s = {args.requests / cold:.0f} requests/s")
        print(
            f"  server saw {sent} requests, at most {stats['max_in_flight']} at once; CPU per request: "
            f"client {per_request(client_cpu):.2f} ms, server {per_request(usage.ru_utime + usage.ru_stime):.2f} ms"
        )
        print(f"sampling, warm cache re-run: {warm:.2f} s ({args.requests / warm:.0f} requests/s, no request sent)")
        if args.answers:
            samples = answers(args.answers)
            with server(Path(tmp) / "judge-direct", "--latency", str(args.latency)) as url:
                seconds = judge_run(url, Path(tmp) / "direct.sqlite", samples, max_concurrency=args.judge_concurrency)
                stats, timeline = get(url, "/_test/stats"), get(url, "/_test/timeline")["timeline"]
            mean, windows = in_flight_summary(timeline)
            print(
                f"judge, direct: {args.answers} answers, max_concurrency {args.judge_concurrency}, replies "
                f"{args.latency:.2f} s on average: {seconds:.1f} s; {stats['requests'].get('POST /v1/chat/completions', 0)} "
                f"requests, in flight: mean {mean:.1f}, max {stats['max_in_flight']}"
            )
            print("  in flight per second: " + " ".join(f"{w:.0f}" for w in windows[:40]) + (" …" if len(windows) > 40 else ""))
            with server(Path(tmp) / "judge-batch") as url:
                interval = {"poll_interval": args.poll_interval, "max_poll_interval": args.poll_interval}
                seconds = judge_run(url, Path(tmp) / "batch.sqlite", samples, batch_api=True, **interval)
                stats = get(url, "/_test/stats")
            print(
                f"judge, Batch API: {args.answers} answers, a poll every {args.poll_interval} s: {seconds:.1f} s; "
                f"{stats['batches_created']} batches created, at most {stats['max_batches_in_flight']} in flight at once, "
                f"{stats['requests'].get('GET /v1/batches/{batch}', 0)} polls"
            )
    print(f"retries: {sum(retries.causes.values())}" + "".join(f"; {n} × {cause}" for cause, n in retries.causes.most_common()))


if __name__ == "__main__":
    main()
