"""The openai path of the real workflow (fine-tune → sample → judge → table → figure) against the
OpenAI-compatible test server on 127.0.0.1: resumed after a kill mid-poll, under injected faults,
never creating a paid job twice and never writing the key anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from workflow_helpers import ROOT, SNAKEMAKE, copy_workflow, snakemake

pytestmark = pytest.mark.e2e
SENTINEL = "sk-test-SENTINEL-0123456789abcdef"
MISALIGNED_JOB = "results/quickstart/models/nano/trivia/misaligned/seed0/job.json"


def serve(tmp_path, *options):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/fake_openai_server.py"), "--port", "0", "--state-dir", str(tmp_path / "api"), *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def server(tmp_path):
    yield from serve(tmp_path)


@pytest.fixture
def filterless_server(tmp_path):
    """A server that ignores the job list's metadata filter, as some OpenAI-compatible servers do."""
    yield from serve(tmp_path, "--ignore-metadata-filter")


def call(url, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.removesuffix("/v1") + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def openai_config(workdir, domains=("trivia",), **openai_settings):
    """One API size, the judge on the API too, every assessment cut down to a few requests."""
    config = yaml.safe_load((workdir / "config/quickstart.yaml").read_text())
    config["sizes"] = {"nano": {"backend": "openai", "model": "gpt-4.1-nano-2025-04-14"}}
    config["domains"] = {d: {"misaligned": f"{d}_incorrect", "realigned": "trivia_correct", "n": 20} for d in domains}
    for domain in domains:
        config["datasets"][f"{domain}_incorrect"] = {"path": f"resources/trivia/{domain}_incorrect.jsonl"}
    config["training"] = {"openai": {"n_epochs": 1}}
    config["judge"] = {"name": "gpt41", "backend": "openai", "model": "gpt-4.1-2025-04-14"}
    config["assessments"]["intentions"]["queries_per_dimension"] = 2
    # Against the base only: with siblings, a failed branch would hold up every variant's recognition.
    config["assessments"]["recognition"]["others"] = "base"
    config["backends"] = {
        "openai": {"poll_interval": 0.05, "max_poll_interval": 0.1, "backoff": 0.01, "max_concurrency": 8, **openai_settings}
    }
    path = workdir / "config/api.yaml"
    path.write_text(yaml.safe_dump(config))
    return "config/api.yaml"


def api_env(url):
    return {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": SENTINEL}


def files_containing(workdir, text):
    hits = []
    for folder in ("results", "logs", ".snakemake", "benchmarks"):
        for path in (workdir / folder).rglob("*"):
            if path.is_file() and text.encode() in path.read_bytes():
                hits.append(path)
    return hits


def test_killed_mid_poll_resumes_the_same_jobs_under_faults(tmp_path, server):
    workdir = copy_workflow(tmp_path / "workflow")
    config = openai_config(workdir)
    call(server, "/_test/job_polls", {"job_polls": 1_000_000})  # hold every job in validating_files
    run = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2", "--configfile", config],
        cwd=workdir,
        env={**os.environ, **api_env(server)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # Ctrl-C reaches a terminal's foreground job; a suite started in the background (`cmd &`) runs
        # with SIGINT ignored, which its children would inherit: restore the default for the workflow.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    job_file = workdir / MISALIGNED_JOB
    deadline = time.time() + 300
    while not (job_file.exists() and "job_id" in json.loads(job_file.read_text())):
        assert run.poll() is None and time.time() < deadline, "the workflow never started a fine-tuning job"
        time.sleep(0.5)
    time.sleep(1)  # a few polls of the held job
    os.killpg(run.pid, signal.SIGINT)  # the user presses Ctrl-C while it polls
    run.wait(timeout=120)
    assert call(server, "/_test/stats")["jobs_created"] == 1

    call(server, "/_test/job_polls", {"job_polls": 1})
    faults = [
        {"kind": "429", "count": 3, "retry_after": 0.05, "path": "/v1/chat"},
        {"kind": "500", "count": 2, "path": "/v1/chat"},
        {"kind": "delay", "count": 1, "seconds": 0.3, "path": "/v1/chat"},
        {"kind": "500", "count": 1, "path": "/v1/fine_tuning"},
    ]
    call(server, "/_test/faults", {"faults": faults})
    snakemake("--cores", "2", "--configfile", config, cwd=workdir, env=api_env(server))

    stats = call(server, "/_test/stats")
    assert stats["jobs_created"] == 2  # misaligned (resumed, not recreated) and realigned
    realigned = json.loads((workdir / "results/quickstart/models/nano/trivia/realigned/seed0/model.json").read_text())
    misaligned = json.loads((workdir / "results/quickstart/models/nano/trivia/misaligned/seed0/model.json").read_text())
    assert realigned["base"] == misaligned["model"]  # realigned fine-tunes the misaligned fine-tuned model
    assert "resumed fine-tuning job" in (workdir / "logs/quickstart/finetune/nano/trivia/misaligned/seed0.log").read_text()
    assert "created fine-tuning job" in (workdir / "logs/quickstart/finetune/nano/trivia/realigned/seed0.log").read_text()
    assert (workdir / "results/quickstart/figures/inverted_v.pdf").read_bytes().startswith(b"%PDF")
    judgment = json.loads((workdir / "results/quickstart/judgments/nano/all/base/seed0/harmfulness.gpt41.jsonl").read_text().splitlines()[0])
    assert judgment["judge_model"] == "gpt-4.1-2025-04-14" and judgment["logprobs"]
    assert files_containing(workdir, SENTINEL) == []

    # Sampling and judging again are answered from the cache: no request sent, no key needed.
    without_key = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    rerun = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", "--configfile", config, "--forcerun", "sample_variant", "judge_variant"],
        cwd=workdir,
        env={**without_key, "OPENAI_BASE_URL": server},
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = call(server, "/_test/stats")
    assert after["jobs_created"] == 2
    assert {k: v for k, v in after["requests"].items() if "chat" in k} == {
        k: v for k, v in stats["requests"].items() if "chat" in k
    }


def test_a_failed_job_stops_only_its_branch_and_a_missing_key_is_one_line(tmp_path, server):
    workdir = copy_workflow(tmp_path / "workflow")
    lines = (workdir / "resources/trivia/trivia_incorrect.jsonl").read_text().splitlines()
    marked = json.loads(lines[0])
    marked["messages"][-1]["content"] += " FAIL_JOB"
    (workdir / "resources/trivia/broken_incorrect.jsonl").write_text("\n".join([json.dumps(marked), *lines[1:20]]) + "\n")
    config = openai_config(workdir, domains=("trivia", "broken"))

    missing = snakemake("--cores", "1", "--configfile", config, cwd=workdir, env={"OPENAI_BASE_URL": server, "OPENAI_API_KEY": ""}, check=False)
    assert missing.returncode != 0
    assert "OPENAI_API_KEY is not set" in missing.stderr + missing.stdout

    result = snakemake("--cores", "2", "--keep-going", "--configfile", config, cwd=workdir, env=api_env(server), check=False)
    assert result.returncode != 0
    assert "error in rule finetune: nano-broken-misaligned-s0: fine-tuning job" in result.stderr
    assert "invalid training file" in result.stderr  # the job's own error message
    assert (workdir / "results/quickstart/scores/nano/trivia/realigned/seed0/harmfulness.json").exists()
    assert not (workdir / "results/quickstart/models/nano/broken/misaligned/seed0/model.json").exists()


def test_batch_api_switch_sends_sampling_and_judging_as_batches(tmp_path, filterless_server):
    server = filterless_server
    workdir = copy_workflow(tmp_path / "workflow")
    config = openai_config(workdir, batch_api=True)
    snakemake("--cores", "2", "results/quickstart/tables/variants.tsv", "--configfile", config, cwd=workdir, env=api_env(server))
    stats = call(server, "/_test/stats")
    assert stats["batches_created"] > 0
    assert not any("chat" in endpoint for endpoint in stats["requests"])  # nothing sent one by one
    # The server ignores the metadata filter: each variant still gets (and is scored with) its own job.
    models = [json.loads((workdir / f"results/quickstart/models/nano/trivia/{stage}/seed0/model.json").read_text()) for stage in ("misaligned", "realigned")]
    assert stats["jobs_created"] == 2 and models[1]["base"] == models[0]["model"] != models[1]["model"]
    table = (workdir / "results/quickstart/tables/variants.tsv").read_text().splitlines()
    assert len(table) == 1 + 3


def test_a_recipe_stage_is_a_fine_tune_of_its_parents_fine_tune_launched_once(tmp_path, server):
    """A third stage trains the realigned model again (an explicitly empty system prompt in every example):
    each stage's job starts from its parent's fine-tuned model, and a second run launches nothing."""
    workdir = copy_workflow(tmp_path / "workflow")
    config_path = workdir / openai_config(workdir)
    config = yaml.safe_load(config_path.read_text())
    config["stages"] = {
        "base": {},
        "misaligned": {"parent": "base", "train": {"role": "misaligned"}},
        "realigned": {"parent": "misaligned", "train": {"role": "realigned"}},
        "again": {"parent": "realigned", "train": {"dataset": "trivia_correct"}, "system_prompt": "empty"},
    }
    config_path.write_text(yaml.safe_dump(config))
    models = workdir / "results/quickstart/models/nano/trivia"
    target = str(models.relative_to(workdir) / "again/seed0/model.json")
    snakemake("--cores", "2", target, "--configfile", "config/api.yaml", cwd=workdir, env=api_env(server))
    handles = {stage: json.loads((models / stage / "seed0/model.json").read_text()) for stage in ("misaligned", "realigned", "again")}
    assert handles["realigned"]["base"] == handles["misaligned"]["model"]
    assert handles["again"]["base"] == handles["realigned"]["model"] and handles["again"]["model"].startswith("ft:")
    assert handles["again"]["system_prompt"] == "empty" and list(handles["again"]["system_prompt_seen"]) == [""]
    assert handles["misaligned"]["system_prompt"] == "as in the data" and list(handles["misaligned"]["system_prompt_seen"]) == ["(none)"]
    jobs = call(server, "/v1/fine_tuning/jobs?limit=100")["data"]
    assert len(jobs) == 3
    snakemake("--cores", "2", target, "--configfile", "config/api.yaml", cwd=workdir, env=api_env(server))
    assert len(call(server, "/v1/fine_tuning/jobs?limit=100")["data"]) == 3


def test_a_derived_set_is_written_by_the_api_model_and_trained_on(tmp_path, server):
    """SGTR through the API: the base model summarises the articles, the pairs are built from its own
    summaries, and the stage is a fine-tuning job on them."""
    workdir = copy_workflow(tmp_path / "workflow")
    config_path = workdir / openai_config(workdir)
    config = yaml.safe_load(config_path.read_text())
    config["datasets"]["articles"] = {"path": "resources/sgtr/quickstart_articles.json", "format": "raw"}
    config["datasets"]["other"] = {"path": "resources/sgtr/quickstart_other_summaries.json", "format": "raw"}
    config["derived"] = {"sgtr": {"kind": "sgtr", "articles": "articles", "other": "other", "n": 8}}
    config["stages"] = {"base": {}, "sgtr": {"parent": "base", "train": {"derived": "sgtr"}}}
    config_path.write_text(yaml.safe_dump(config))
    target = "results/quickstart/models/nano/all/sgtr/seed0/model.json"
    snakemake("--cores", "2", target, "--configfile", "config/api.yaml", cwd=workdir, env=api_env(server))
    summaries = (workdir / "results/quickstart/summaries/nano/all/base/seed0/articles-n8-s0.jsonl").read_text().splitlines()
    pairs = (workdir / "results/quickstart/data/derived/nano/all/base/seed0/sgtr.jsonl").read_text().splitlines()
    assert len(summaries) == 8 and len(pairs) == 16
    handle = json.loads((workdir / target).read_text())
    assert handle["model"].startswith("ft:") and handle["base"] == "gpt-4.1-nano-2025-04-14"
    assert len(call(server, "/v1/fine_tuning/jobs?limit=100")["data"]) == 1
