"""GPUs on one machine shared by parallel jobs: each job that asks for `gpu: N` gets N devices of its
own (CUDA_VISIBLE_DEVICES), and the workflow never runs more GPU jobs at once than there are devices.

Snakemake neither caps an undeclared `gpu` resource nor tells a job which device to use, so without
this `snakemake --cores all` starts every GPU job at once on cuda:0. Devices are counted without
initialising CUDA (a CUDA context before vLLM's engine starts breaks its worker processes), and claimed
with file locks that the kernel releases when the job's process ends, however it ends. On Slurm the
scheduler does both, and nothing here is done.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from pathlib import Path

log = logging.getLogger("emaware")
LOCK_DIR = ".snakemake/gpu-locks"
_held: list[int] = []  # open lock files: closing them (process exit) frees the devices


def cap_local_jobs(workflow) -> None:
    """On one machine, never more GPU jobs at once than it has GPUs (`--resources gpu=N` overrides)."""
    local = workflow.global_resources["_nodes"].value is None
    if local and "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", visible_gpu_count())


def visible_gpu_count() -> int:
    """NVIDIA devices of this machine (0 without a driver), from the driver, not from CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return len(list(proc.iterdir()))
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def claim(count: int, total: int, lock_dir: str | os.PathLike = LOCK_DIR, wait: float = 5.0) -> list[int]:
    """`count` device ids of `total` that no other running job holds; waits while they are taken."""
    if count > total:
        raise RuntimeError(f"this job needs {count} GPUs and the machine has {total}")
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    while True:
        taken = []
        for device in range(total):
            fd = os.open(Path(lock_dir) / f"gpu{device}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            taken.append((device, fd))
            if len(taken) == count:
                _held.extend(fd for _, fd in taken)
                return [device for device, _ in taken]
        for _, fd in taken:
            os.close(fd)
        log.info("waiting for %d free GPU(s) of %d", count, total)
        time.sleep(wait)


def assign(count: int) -> None:
    """Give this job process its own `count` GPUs (none for a job that asks for none)."""
    if os.environ.get("SLURM_JOB_ID") or "CUDA_VISIBLE_DEVICES" in os.environ:
        return  # the cluster or the user already chose
    devices = claim(count, visible_gpu_count()) if count else []
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    if devices:
        log.info("GPUs of this job: %s", os.environ["CUDA_VISIBLE_DEVICES"])
