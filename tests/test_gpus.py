"""GPU jobs on one machine: a device of their own each, never more at once than there are devices.
No GPU here: a stand-in `nvidia-smi` (the boundary the count is read from) reports four."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from emaware import gpus
from workflow_helpers import SNAKEMAKE

HOLD = "from emaware import gpus; import sys, time; print(gpus.claim(1, 2, sys.argv[1])); sys.stdout.flush(); time.sleep(float(sys.argv[2]))"


def test_two_jobs_never_share_a_device_and_an_ended_job_frees_it(tmp_path):
    locks = tmp_path / "locks"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(locks), "30"], stdout=subprocess.PIPE, text=True)
    held = holder.stdout.readline().strip()
    assert gpus.claim(1, 2, locks) == [1 if held == "[0]" else 0]
    holder.kill()  # even a killed job frees its device
    holder.wait()
    gpus._held.clear()  # (this process keeps its own claim; a new process asks for both)
    both = subprocess.run([sys.executable, "-c", HOLD.replace("claim(1, 2", "claim(2, 2"), str(tmp_path / "fresh"), "0"],
                          capture_output=True, text=True, check=True)
    assert both.stdout.strip() == "[0, 1]"


def test_a_job_is_given_its_devices_unless_slurm_or_the_user_chose(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(gpus, "visible_gpu_count", lambda: 4)
    gpus.assign(2)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    gpus.assign(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    gpus.assign(0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # a CPU job sees no GPU
    with pytest.raises(RuntimeError, match="needs 5 GPUs and the machine has 4"):
        gpus.claim(5, 4, tmp_path)


def test_visible_devices_are_counted_without_cuda(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpus.visible_gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.visible_gpu_count() == 0


SNAKEFILE = """
from emaware import gpus

gpus.cap_local_jobs(workflow)

rule all:
    input: expand("out/{i}.txt", i=range(8))

rule job:
    output: done="out/{i}.txt"
    resources: gpu=1
    script: "job.py"
"""
JOB = """
import os, time
from emaware.rulekit import run

def step(done):
    start = time.time()
    time.sleep(1.5)
    open(done, "w").write(f"{os.environ['CUDA_VISIBLE_DEVICES']} {start} {time.time()}")

run(snakemake, step)
"""


def test_cores_all_on_a_four_gpu_machine_runs_four_jobs_on_four_devices(tmp_path):
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin/nvidia-smi"
    fake.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: GPU-{i})'\n" for i in range(4)))
    fake.chmod(0o755)
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(textwrap.dedent(JOB))
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    subprocess.run([*SNAKEMAKE, "--cores", "8"], cwd=tmp_path, env=env, check=True, capture_output=True)
    jobs = [(int(d), float(a), float(b)) for d, a, b in (p.read_text().split() for p in (tmp_path / "out").iterdir())]
    assert {device for device, _, _ in jobs} <= {0, 1, 2, 3}
    for device, start, end in jobs:
        running = [j for j in jobs if j[1] < end and start < j[2]]  # overlapping this one (itself included)
        assert len(running) <= 4
        assert [j[0] for j in running].count(device) == 1
