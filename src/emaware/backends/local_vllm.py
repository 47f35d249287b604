"""Sampling with vLLM for the local backend, in a process of its own.

The engine runs in `python -m emaware.backends.local_vllm REQUEST REPLIES`, never inside the job:
vLLM starts its engine and tensor-parallel workers as child processes. A forked child cannot use CUDA
once its parent has touched it ("Cannot re-initialize CUDA in forked subprocess"), and a spawned
child re-runs its parent's `__main__`, which in a Snakemake job is the pasted script running the step
at top level. Here `__main__` is this module, which does nothing when re-imported, and nothing touches
CUDA before vLLM does; the job itself counts GPUs from the environment only (`emaware.gpus`).

Offline batches rather than vLLM's OpenAI-compatible server with the openai backend's client: every
assessment of a variant is one batch that vLLM schedules at once (one engine start per variant), with no
port to pick on a shared node, no readiness polling and no server to stop.

The prompts go over as token ids made by the transformers path's own code, so both samplers see the
same tokens. A chain of adapters is served as one adapter (`lora_combine`), not a merged checkpoint.
Where vLLM is missing or fails, one log line says so and the caller samples with transformers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from .. import UserError
from ..gpus import visible_gpu_count
from .base import Conversation, Handle, log
from .lora_combine import combine
from .seeded_sampling import request_seeds

# Set for the engine's process: spawned workers are safe there (this module's body is guarded), and
# torch's CUDA check then goes through NVML instead of creating a CUDA context.
ENGINE_ENV = {"VLLM_WORKER_MULTIPROC_METHOD": "spawn", "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # the max_lora_rank values vLLM accepts
MAX_MODEL_LEN = 4096


def usable(settings: dict[str, Any]) -> bool:
    """Whether vLLM samples here: allowed by `backends.local.vllm`, installed, and the job has GPUs."""
    if not (settings.get("vllm", True) and visible_gpu_count()):  # Slurm's or emaware.gpus.assign's GPUs
        return False
    if importlib.util.find_spec("vllm") is None:
        log.warning("vLLM is not installed: sampling with transformers (pip install -e '.[vllm]' for speed)")
        return False
    return True


def generate(
    handle: Handle,
    groups: list[tuple[list[Conversation], int, dict[str, Any]]],
    settings: dict[str, Any],
    encode: Callable[[Any, Conversation], list[int]],
) -> list[list[list[str]]] | None:
    """For each (conversations, n, sampling) group, `n` replies per conversation from one vLLM engine,
    or None where it cannot sample (the caller then uses transformers). `encode(tokenizer, conversation)`
    gives a prompt's token ids."""
    requests = [(conv, n, sampling) for convs, n, sampling in groups for conv in convs]
    with tempfile.TemporaryDirectory(prefix="emaware-vllm-") as folder:
        try:
            request = _request(handle, requests, settings, visible_gpu_count(), encode, Path(folder))
        except (OSError, ValueError) as err:
            log.warning("vLLM cannot load this model (%s): sampling with transformers", err)
            return None
        replies = _run(request, Path(folder))
    if replies is None:
        return None
    # vLLM rejects n > 1 without sampling; greedy replies are identical, so one is repeated n times.
    flat = iter(texts * n if _greedy(sampling) else texts for (_, n, sampling), texts in zip(requests, replies))
    return [[next(flat) for _ in convs] for convs, _, _ in groups]


def _greedy(sampling: dict[str, Any]) -> bool:
    return float(sampling.get("temperature", 1.0)) == 0.0


def _request(handle, requests, settings, gpus, encode, folder: Path) -> dict[str, Any]:
    """What the engine's process needs: engine arguments, LoRA adapter, prompt tokens, sampling."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(handle["model"])
    prompts = [encode(tokenizer, conv) for conv, _, _ in requests]
    engine: dict[str, Any] = {
        "model": handle["model"],
        "dtype": settings.get("dtype", "auto"),
        "tensor_parallel_size": gpus,
        "max_model_len": int(settings.get("max_model_len", MAX_MODEL_LEN)),
    }
    lora = None
    if handle.get("adapters"):
        lora = str(folder / "adapter")
        rank = combine(handle["adapters"], lora)
        if rank > LORA_RANKS[-1]:
            raise ValueError(f"the adapters' total LoRA rank {rank} is above vLLM's {LORA_RANKS[-1]}")
        engine.update(enable_lora=True, max_lora_rank=next(r for r in LORA_RANKS if r >= rank))
    engine.update(settings.get("vllm_args", {}))  # the user's explicit arguments win
    params = []
    for (conv, n, sampling), ids in zip(requests, prompts):
        max_tokens = int(sampling.get("max_tokens", 600))
        if len(ids) + max_tokens > engine["max_model_len"]:
            raise UserError(
                f"backends.local.max_model_len: {engine['max_model_len']} tokens cannot hold a prompt of"
                f" {len(ids)} tokens and max_tokens ({max_tokens}); raise it"
            )
        params.append(
            {
                "n": 1 if _greedy(sampling) else n,
                "temperature": float(sampling.get("temperature", 1.0)),
                "top_p": float(sampling.get("top_p", 1.0)),
                "max_tokens": max_tokens,
                # One seed per conversation (from its content, as on the transformers path): vLLM draws
                # the request's n samples from its own generator, whatever the batch.
                "seed": request_seeds(int(sampling.get("seed", 0)), conv, 1)[0],
            }
        )
    return {"engine": engine, "lora": lora, "prompts": prompts, "params": params}


def _run(request: dict[str, Any], folder: Path) -> list[list[str]] | None:
    """The engine's replies, or None (one log line) when its process fails; its output goes to the job's log."""
    request_path, replies_path = folder / "request.json", folder / "replies.json"
    request_path.write_text(json.dumps(request))
    engine = request["engine"]
    log.info(
        "sampling %d prompts with vLLM (tensor_parallel_size=%s, max_model_len=%s, max_lora_rank=%s)",
        len(request["prompts"]),
        engine["tensor_parallel_size"],
        engine["max_model_len"],
        engine.get("max_lora_rank"),
    )
    out = _log_stream()
    command = [sys.executable, "-m", __name__, str(request_path), str(replies_path)]
    code = subprocess.run(command, stdout=out, stderr=out, env={**os.environ, **ENGINE_ENV}).returncode
    if code != 0 or not replies_path.is_file():
        log.warning("vLLM failed (exit status %d, its messages are above): sampling with transformers", code)
        return None
    return json.loads(replies_path.read_text())


def _log_stream():
    """The job's log (`emaware.rulekit.run` points sys.stderr at it), for vLLM's output; else inherited."""
    try:
        sys.stderr.flush()
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return sys.stderr


def _serve(request_path: str, replies_path: str) -> None:
    """The engine's process: one offline batch."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    request = json.loads(Path(request_path).read_text())
    llm = LLM(**request["engine"])
    lora = LoRARequest("adapter", 1, request["lora"]) if request["lora"] else None
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in request["prompts"]],
        [SamplingParams(**params) for params in request["params"]],
        lora_request=lora,
        use_tqdm=True,
    )
    Path(replies_path).write_text(json.dumps([[choice.text for choice in out.outputs] for out in outputs]))


if __name__ == "__main__":  # not when vLLM's spawned workers re-import this module as __mp_main__
    _serve(*sys.argv[1:])
