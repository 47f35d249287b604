"""Running the real Snakemake CLI from tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the offline copy of the public datasets
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path = ROOT, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """The `Job stats` table of a dry-run as {rule: count} (without the total)."""
    counts = {}
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


def dry_run(*args: str, **kwargs) -> dict[str, int]:
    """Job counts of a dry-run (add "--forceall" to count every job whatever exists already)."""
    result = snakemake("-n", *args, **kwargs)
    text = result.stdout + result.stderr
    return job_counts(text) if "Job stats:" in text else {}


def copy_workflow(dest: Path) -> Path:
    """A runnable copy of the workflow (so a test run has its own results/ and .snakemake/)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "resources", "envs", "profiles", "slurm"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy2(source, dest / name)
    return dest
