"""The GPU benchmark runs (as a CPU smoke run on the tiny shape), so it does not rot between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys

from workflow_helpers import ROOT


def test_gpu_benchmark_smoke_run_on_the_cpu():
    args = ["--shape", "tiny", "--device", "cpu", "--batch", "4", "--new-tokens", "8", "--sft-rows", "8", "--judge-words", "20"]
    result = subprocess.run([sys.executable, str(ROOT / "bench/gpu.py"), *args], capture_output=True, text=True, check=True)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["shape"] == "tiny" and row["parameters"] > 0
    for key in ("sampling_tokens_per_s_seeded", "sampling_tokens_per_s_plain_generate", "judge_prompts_per_s", "sft_tokens_per_s"):
        assert row[key] > 0, key
