"""Benchmark (not a test): what a whole clean run of the workflow costs, and where the CPU goes.

Runs Snakemake on a config in a fresh copy of the workflow and prints total CPU-seconds (Snakemake and
every job it ran), wall seconds, model loads per variant (sampling and log-probs; fine-tuning apart),
judge loads per run, and the share of CPU spent outside model work (loading weights, forward passes,
training), as each job's log reports it (`emaware.worktime`). Also prints a sha256 over the run's
tables, so two versions of the code can be checked for byte-identical results.

    .venv/bin/python bench/workflow.py [--config config/quickstart.yaml] [--cores 2] [--repeat 1]

With --repeat N the numbers are the median over N clean runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("Snakefile", "workflow", "config", "resources", "envs", "profiles", "slurm")
JOB_LINE = re.compile(r"cpu: ([\d.]+) s in this job's process, ([\d.]+) s model work, (\d+) model load")
# Snakemake's own process reports its CPU (scheduling, bookkeeping) as it exits.
SNAKEMAKE = (
    "import atexit, resource, sys\n"
    "def report():\n"
    "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    print(f'snakemake process cpu: {usage.ru_utime + usage.ru_stime:.2f}', file=sys.stderr)\n"
    "atexit.register(report)\n"
    "sys.argv[0] = 'snakemake'\n"
    "from snakemake.cli import main\n"
    "main()\n"
)
SNAKEMAKE_LINE = re.compile(r"snakemake process cpu: ([\d.]+)")
VARIANT = re.compile(r"([^/]+/[^/]+/[^/]+/seed\d+)")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(config: str, cores: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="emaware-bench-") as tmp:
        work = Path(tmp)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, work / name)
            elif source.exists():
                shutil.copy2(source, work / name)
        cpu, wall = children_cpu(), time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", SNAKEMAKE, "--cores", str(cores), "--configfile", config],
            cwd=work,
            capture_output=True,
            text=True,
        )
        cpu, wall = children_cpu() - cpu, time.perf_counter() - wall
        if result.returncode != 0:
            sys.exit(f"snakemake failed:\n{result.stderr[-3000:]}")
        run = yaml.safe_load((work / config).read_text()).get("run", Path(config).stem)
        scheduler = float(SNAKEMAKE_LINE.findall(result.stderr)[-1])
        return {"cpu_s": cpu, "wall_s": wall, "snakemake_cpu_s": scheduler, **job_logs(work / "logs" / run), "tables_sha256": tables_hash(work / "results" / run / "tables")}


def job_logs(logs: Path) -> dict:
    """Per-rule jobs and CPU, model work, and model loads, from the `cpu:` line of every job log."""
    jobs, job_cpu, work, loads_per_variant, judge_loads = Counter(), Counter(), 0.0, Counter(), 0
    for path in sorted(logs.rglob("*.log")):
        match = JOB_LINE.search(path.read_text(encoding="utf-8", errors="replace"))
        if not match:
            continue
        rule = path.relative_to(logs).parts[0]
        cpu, model, loads = float(match[1]), float(match[2]), int(match[3])
        jobs[rule] += 1
        job_cpu[rule] += cpu
        work += model
        if rule.startswith("judge"):
            judge_loads += loads
        elif rule != "finetune" and (variant := VARIANT.search(str(path.relative_to(logs)))):
            loads_per_variant[variant[1]] += loads
    return {
        "model_work_cpu_s": work,
        "jobs": dict(sorted(jobs.items())),
        "job_cpu_s": {rule: round(cpu, 2) for rule, cpu in sorted(job_cpu.items())},
        "model_loads_per_variant": dict(sorted(loads_per_variant.items())),
        "judge_loads": judge_loads,
    }


def tables_hash(tables: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(tables.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(tables).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/quickstart.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs = [run_once(args.config, args.cores) for _ in range(args.repeat)]
    first = runs[0]
    if len({r["tables_sha256"] for r in runs}) != 1:
        print("warning: the runs' tables differ", file=sys.stderr)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    work = statistics.median(r["model_work_cpu_s"] for r in runs)
    loads = first["model_loads_per_variant"].values()
    summary = {
        "config": args.config,
        "runs": len(runs),
        "cpu_s": round(cpu, 1),
        "wall_s": round(statistics.median(r["wall_s"] for r in runs), 1),
        "model_work_cpu_s": round(work, 1),
        "snakemake_cpu_s": round(statistics.median(r["snakemake_cpu_s"] for r in runs), 1),
        "share_outside_model_work": round(1 - work / cpu, 3),
        "model_loads_per_variant_max": max(loads, default=0),
        "model_loads_per_variant_mean": round(statistics.mean(loads), 2) if loads else 0,
        "judge_loads_per_run": first["judge_loads"],
        "jobs": first["jobs"],
        "job_cpu_s": first["job_cpu_s"],
        "tables_sha256": first["tables_sha256"],
    }
    for key in ("cpu_s", "wall_s", "snakemake_cpu_s", "model_work_cpu_s", "share_outside_model_work", "model_loads_per_variant_max", "judge_loads_per_run"):
        print(f"{key:28} {summary[key]}", file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
