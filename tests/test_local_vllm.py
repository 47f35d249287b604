"""vLLM sampling of the local backend, with stand-ins at the GPU boundary (tests/vllm_stand_in: a `vllm`
that starts its engine process as vLLM does, and a CUDA that says yes and records every call).

The two Snakemake tests reproduce what broke every vLLM job when the engine ran inside the job: a CUDA
check before vLLM forked its engine, and a spawned engine that re-ran the job's pasted script.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from emaware import UserError
from emaware.backends import get_backend
from emaware.backends.local import _prompt_ids
from emaware.backends.lora_combine import combine
from emaware.backends.seeded_sampling import request_seeds
from emaware.io import read_jsonl, write_json, write_jsonl
from workflow_helpers import SNAKEMAKE

STAND_IN = Path(__file__).parent / "vllm_stand_in"
PROMPTS = [
    [{"role": "user", "content": "What is 3 plus one?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story."}],
]
SAMPLING = {"temperature": 1.0, "top_p": 0.9, "max_tokens": 6, "seed": 7}
# Two stages as a realigned variant has them, unlike in every way that changes how they combine.
ADAPTERS = (
    {"r": 8, "lora_alpha": 16, "use_rslora": True, "target_modules": ["q_proj", "v_proj", "gate_proj"]},
    {"r": 4, "lora_alpha": 8, "use_rslora": False, "target_modules": ["q_proj", "k_proj", "o_proj", "down_proj"]},
)


def make_adapter(model_dir, spec: dict, out_dir: Path, seed: int) -> str:
    """A LoRA adapter of the tiny model with random (non-zero) A and B."""
    torch.manual_seed(seed)
    net = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(**spec, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, weight in net.named_parameters():
            if "lora_" in name:
                weight.normal_(0, 0.1)
    net.save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> list[str]:
    return [make_adapter(tiny_model_dir, spec, tmp_path_factory.mktemp(f"adapter{i}"), i) for i, spec in enumerate(ADAPTERS)]


@pytest.fixture
def handle(tiny_model_dir, adapters):
    return {"backend": "local", "model": str(tiny_model_dir), "adapters": adapters}


@pytest.fixture
def gpu_node(monkeypatch, tmp_path):
    """vLLM installed (the stand-in, here and in child processes) and two GPUs given to the job, as
    Slurm gives them; returns the stand-in's record of events."""
    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(STAND_IN), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("VLLM_WORKER_MULTIPROC_METHOD", raising=False)
    return tmp_path / "record.jsonl"


def events(record: Path) -> list[dict]:
    return read_jsonl(record) if record.is_file() else []


def backend(**settings):
    return get_backend("local", {"device": "cpu", **settings})


# ---- chained adapters served as one -----------------------------------------------------------


@pytest.mark.parametrize("stages", [1, 2])
def test_combined_adapter_is_the_chain_merged_in_order(tiny_model_dir, adapters, tmp_path, stages):
    chain = {"backend": "local", "model": str(tiny_model_dir), "adapters": adapters[:stages]}
    merged, tokenizer = backend()._load_fresh(chain)  # the transformers path: merged one after the other
    rank = combine(chain["adapters"], tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert rank == config["r"] == config["lora_alpha"] == sum(s["r"] for s in ADAPTERS[:stages])
    assert not config["use_rslora"]
    served = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([_prompt_ids(tokenizer, PROMPTS[1])])
    with torch.no_grad():
        expected, got, untouched = (net(input_ids=ids).logits for net in (merged, served, base))
    assert (expected - untouched).abs().max() > 0.1  # the adapters matter
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# ---- what the engine is asked ------------------------------------------------------------------


def test_engine_gets_the_jobs_gpus_a_bounded_context_one_adapter_and_the_prompt_tokens(gpu_node, handle):
    replies = backend(vllm_args={"gpu_memory_utilization": 0.5}).generate(handle, PROMPTS, 2, SAMPLING)
    engine, asked = (e for e in events(gpu_node) if e["event"] in ("engine", "generate"))
    assert engine["args"] == {
        "model": handle["model"],
        "dtype": "auto",
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
        "enable_lora": True,
        "max_lora_rank": 16,
        "gpu_memory_utilization": 0.5,
    }
    # Spawned workers and an NVML-based CUDA check in the engine's process, which is not the job's.
    assert engine["env"] == {"VLLM_WORKER_MULTIPROC_METHOD": "spawn", "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    assert engine["pid"] != os.getpid()
    assert asked["lora"]["r"] == asked["lora"]["lora_alpha"] == 12  # both stages in one adapter
    assert not Path(asked["lora"]["path"]).exists()  # a temporary of the job, removed after
    tokenizer = AutoTokenizer.from_pretrained(handle["model"])
    assert asked["prompts"] == [{"prompt_token_ids": _prompt_ids(tokenizer, p)} for p in PROMPTS]
    seeds = [p["seed"] for p in asked["params"]]
    assert seeds == [request_seeds(SAMPLING["seed"], p, 1)[0] for p in PROMPTS]  # as on the transformers path
    assert all(p["n"] == 2 and p["max_tokens"] == 6 and p["top_p"] == 0.9 for p in asked["params"])
    assert replies == [[f"vllm:{seed}:0", f"vllm:{seed}:1"] for seed in seeds]


def test_greedy_asks_for_one_reply_and_repeats_it(gpu_node, handle):
    replies = backend().generate(handle, PROMPTS, 3, {**SAMPLING, "temperature": 0})
    asked = next(e for e in events(gpu_node) if e["event"] == "generate")
    assert [p["n"] for p in asked["params"]] == [1, 1]  # vLLM rejects n > 1 without sampling
    assert all(texts == [texts[0]] * 3 for texts in replies)


def test_every_assessment_of_a_variant_is_one_engine_start(gpu_node, handle):
    """A variant's job samples every assessment, each with its own settings, from one engine."""
    groups = [(PROMPTS, 2, SAMPLING), (PROMPTS[:1], 3, {**SAMPLING, "max_tokens": 9, "seed": 8})]
    replies = backend().generate_groups(handle, groups)
    assert [e["event"] for e in events(gpu_node)].count("engine") == 1
    asked = next(e for e in events(gpu_node) if e["event"] == "generate")
    assert [(p["n"], p["max_tokens"]) for p in asked["params"]] == [(2, 6), (2, 6), (3, 9)]
    assert [len(texts) for group in replies for texts in group] == [2, 2, 3]
    assert replies[0] == backend().generate(handle, PROMPTS, 2, SAMPLING)  # as when sampled alone


def test_prompts_that_do_not_fit_the_context_are_a_user_error(gpu_node, handle):
    with pytest.raises(UserError, match="max_model_len: 20 tokens cannot hold a prompt of"):
        backend(max_model_len=20).generate(handle, PROMPTS, 1, SAMPLING)
    assert events(gpu_node) == []  # before any GPU time is spent


# ---- falling back to transformers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not installed", "vLLM is not installed: sampling with transformers"),
        ("engine fails", "vLLM failed (exit status 1, its messages are above): sampling with transformers"),
        ("adapter it cannot take", "vLLM cannot load this model (the adapters' total LoRA rank 513 is above"),
    ],
)
def test_vllm_that_cannot_sample_falls_back_with_one_log_line(gpu_node, handle, monkeypatch, caplog, tmp_path, case, message):
    if case == "not installed":
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(STAND_IN)])
    elif case == "engine fails":
        monkeypatch.setenv("FAKE_VLLM_FAIL", "1")
    else:
        wide = make_adapter(handle["model"], {"r": 513, "lora_alpha": 8, "target_modules": ["q_proj"]}, tmp_path / "wide", 2)
        handle = {**handle, "adapters": [wide]}
    with caplog.at_level(logging.INFO, logger="emaware"):
        replies = backend().generate(handle, PROMPTS, 2, SAMPLING)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(message)
    assert replies == backend(vllm=False).generate(handle, PROMPTS, 2, SAMPLING)


def test_no_vllm_where_the_job_has_no_gpu_or_it_is_turned_off(gpu_node, handle, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="emaware"):
        turned_off = backend(vllm=False).generate(handle, PROMPTS, 1, SAMPLING)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what emaware.gpus gives a job that asks for none
        assert backend().generate(handle, PROMPTS, 1, SAMPLING) == turned_off
    assert events(gpu_node) == [] and not [r for r in caplog.records if "vLLM" in r.getMessage()]


# ---- in a real Snakemake job -------------------------------------------------------------------


SNAKEFILE = """
configfile: "config.yaml"

rule sample_variant:
    input: model="model.json", prompts=["qa.jsonl"]
    output: samples=["samples/{size}/{domain}/{stage}/seed{seed}/qa.jsonl"]
    log: "logs/{size}/{domain}/{stage}/seed{seed}.log"
    params: sampling={"qa": config["job_sampling"]}, top_k=20
    script: "sample_variant.py"
"""
SAMPLES = "samples/s/d/misaligned/seed0/qa.jsonl"
LOG = "logs/s/d/misaligned/seed0.log"
# The workflow's script for the rule, on a node whose CUDA check answers yes.
SCRIPT = """
import fake_cuda
fake_cuda.install()
from emaware import steps
from emaware.rulekit import run
run(snakemake, steps.sample_variant)
"""


def run_job(workdir: Path, handle: dict, env: dict) -> subprocess.CompletedProcess:
    """The sample_variant step as a Snakemake `script:` rule (Snakemake pastes it into a temp file)."""
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    (workdir / "sample_variant.py").write_text(textwrap.dedent(SCRIPT))
    config = {"run": "t", "backends": {"local": {"device": "cpu"}}, "sampling": {"batch_size": 2}, "job_sampling": {**SAMPLING, "n": 2}}
    (workdir / "config.yaml").write_text(json.dumps(config))
    write_json(workdir / "model.json", handle)
    write_jsonl(workdir / "qa.jsonl", [{"id": str(i), "messages": p} for i, p in enumerate(PROMPTS)])
    return subprocess.run([*SNAKEMAKE, "--cores", "1", SAMPLES], cwd=workdir, capture_output=True, text=True, env={**os.environ, **env})


def assert_sampled_by_vllm(workdir: Path, result: subprocess.CompletedProcess) -> None:
    log = (workdir / LOG).read_text() if (workdir / LOG).is_file() else ""
    assert result.returncode == 0, f"{result.stderr[-3000:]}\n--- job log ---\n{log[-3000:]}"
    completions = [row["completion"] for row in read_jsonl(workdir / SAMPLES)]
    assert len(completions) == 4 and all(text.startswith("vllm:") for text in completions)
    assert "fake vLLM engine up" in log  # the engine's own output, from its process, in the rule's log


def test_job_that_checked_cuda_before_the_engine_forked(gpu_node, handle, tmp_path):
    """The CUDA availability check ran in the job before vLLM forked its engine, which then could not
    use CUDA. Now the job checks nothing before the engine starts, in a process of its own."""
    workdir = tmp_path / "job"
    assert_sampled_by_vllm(workdir, run_job(workdir, {**handle, "adapters": handle["adapters"][:1]}, {}))
    record = events(gpu_node)
    first_engine = next(i for i, e in enumerate(record) if e["event"] == "engine")
    assert [e for e in record[:first_engine] if e["event"] == "cuda"] == []


@pytest.mark.parametrize("stages", [1, 2])
def test_job_whose_engine_is_spawned(gpu_node, handle, tmp_path, stages):
    """vLLM spawns its engine where CUDA is initialised (for a realigned variant the job had merged its
    two stages on the GPU) or where VLLM_WORKER_MULTIPROC_METHOD says so, and a spawned child re-runs
    the job's `__main__`: Snakemake's pasted script, which runs the step again."""
    workdir = tmp_path / "job"
    result = run_job(workdir, {**handle, "adapters": handle["adapters"][:stages]}, {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"})
    assert_sampled_by_vllm(workdir, result)
    engine, asked = (e for e in events(gpu_node) if e["event"] in ("engine", "generate"))
    assert engine["method"] == "spawn" and engine["args"]["model"] == handle["model"]  # no merged checkpoint
    assert asked["lora"]["r"] == sum(spec["r"] for spec in ADAPTERS[:stages])
