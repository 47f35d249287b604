"""Benchmark (not a test): chat requests per second the OpenAI backend sustains against the fake server,
then the time of the same run again, answered from the warm cache.

    .venv/bin/python bench/openai_client.py [--requests 2000] [--concurrency 64]

The server runs as its own process (tests/fake_openai_server.py) so that client and server do not
share one interpreter lock; both still share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from emaware.backends import get_backend

SERVER = Path(__file__).resolve().parents[1] / "tests" / "fake_openai_server.py"


def run(url: str, cache: Path, concurrency: int, requests: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) of one generate call over `requests` distinct prompts."""
    backend = get_backend("openai", {"base_url": url, "cache": str(cache), "max_concurrency": concurrency})
    conversations = [[{"role": "user", "content": f"Benchmark question number {i}?"}] for i in range(requests)]
    start, cpu = time.perf_counter(), time.process_time()
    sampling = {"max_tokens": 16, "temperature": 1.0}
    replies = backend.generate(backend.base_handle("gpt-4.1-nano"), conversations, 1, sampling)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(replies) == requests and all(r[0] for r in replies)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--state-dir", f"{tmp}/server"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().strip()
            cache = Path(tmp) / "openai.sqlite"
            cold, client_cpu = run(url, cache, args.concurrency, args.requests)
            warm, _ = run(url, cache, args.concurrency, args.requests)
            with urllib.request.urlopen(url.removesuffix("/v1") + "/_test/stats") as response:
                stats = json.load(response)
        finally:
            server.terminate()
            server.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server's CPU time
    sent = stats["requests"].get("POST /v1/chat/completions", 0)
    per_request = lambda seconds: 1000 * seconds / max(sent, 1)  # noqa: E731
    print(f"cold: {args.requests} requests, concurrency {args.concurrency}: {cold:.2f} s = {args.requests / cold:.0f} requests/s")
    print(
        f"  server saw {sent} requests, at most {stats['max_in_flight']} at once; CPU per request: "
        f"client {per_request(client_cpu):.2f} ms, server {per_request(usage.ru_utime + usage.ru_stime):.2f} ms"
    )
    print(f"warm cache re-run: {warm:.2f} s ({args.requests / warm:.0f} requests/s, no request sent)")


if __name__ == "__main__":
    main()
