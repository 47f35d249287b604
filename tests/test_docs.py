"""The commands the docs give work as written on a fresh checkout (dry-run where a real run would train)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time

import pytest

from workflow_helpers import ROOT, SNAKEMAKE, copy_workflow, snakemake

DOCS = ("README.md", "config/README.md", "resources/README.md")


def documented_commands() -> list[str]:
    """Every inline `snakemake …` command of the docs (a table cell may hold several)."""
    commands = []
    for doc in DOCS:
        for span in re.findall(r"`(snakemake [^`]+)`", (ROOT / doc).read_text()):
            commands.append(span.replace("\\|", "|").strip())
    return list(dict.fromkeys(commands))


def test_the_docs_give_commands():
    assert len(documented_commands()) >= 8


@pytest.mark.parametrize("command", documented_commands())
def test_a_documented_command_works(command, tmp_path):
    words = shlex.split(command.split("|")[0])[1:]
    if "--report" in words:  # needs a finished run: tests/test_report.py runs it
        pytest.skip("the report is tested on a finished quickstart run")
    workdir = copy_workflow(tmp_path)
    if "--unlock" in words:
        snakemake(*words, cwd=workdir)
        return
    if "--rulegraph" in words:  # draws without running anything; its stdout goes to `dot`
        assert snakemake(*words, cwd=workdir).stdout.startswith("digraph")
        return
    snakemake(*words, "-n", cwd=workdir)


def test_resume_after_a_kill_as_documented(tmp_path):
    workdir = copy_workflow(tmp_path)
    command = ["results/quickstart/data/summary.tsv", "--cores", "1", "--configfile", "config/quickstart.yaml"]
    run = subprocess.Popen([*SNAKEMAKE, *command], cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = workdir / ".snakemake/locks"
    while run.poll() is None and not (locks.is_dir() and any(locks.iterdir())):
        time.sleep(0.1)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert any(locks.iterdir()), "the run finished before it could be killed"
    assert snakemake(*command, cwd=workdir, check=False).returncode != 0  # locked, as the docs say
    snakemake("--unlock", "--configfile", "config/quickstart.yaml", cwd=workdir)
    snakemake(*command, cwd=workdir)
    assert (workdir / "results/quickstart/data/summary.tsv").is_file()
