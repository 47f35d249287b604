"""Stand-in for vllm (GPU only): `LLM` starts its engine process as vLLM does (fork unless
VLLM_WORKER_MULTIPROC_METHOD says spawn) and records what it was asked in FAKE_VLLM_RECORD."""

import json
import multiprocessing
import os
from pathlib import Path
from types import SimpleNamespace

import fake_cuda


def SamplingParams(**params):
    return SimpleNamespace(**params)


def _engine() -> None:
    if fake_cuda.touched:  # what a forked child of a process that used CUDA hits
        raise RuntimeError("Cannot re-initialize CUDA in forked subprocess")
    print("INFO fake vLLM engine up", flush=True)  # vLLM logs to stdout, from its engine process


class LLM:
    def __init__(self, **args):
        if os.environ.get("FAKE_VLLM_FAIL"):
            raise RuntimeError("fake vLLM: CUDA out of memory")
        method = os.environ.get("VLLM_WORKER_MULTIPROC_METHOD", "fork")
        env = {key: os.environ.get(key) for key in ("VLLM_WORKER_MULTIPROC_METHOD", "PYTORCH_NVML_BASED_CUDA_CHECK")}
        fake_cuda.note("engine", method=method, args=args, env=env)
        child = multiprocessing.get_context(method).Process(target=_engine)
        child.start()
        child.join()
        if child.exitcode:
            raise RuntimeError(f"engine process failed (exit code {child.exitcode})")

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        lora = None
        if lora_request is not None:  # read now: the adapter need only exist while the engine runs
            config = json.loads((Path(lora_request.path) / "adapter_config.json").read_text())
            lora = {"path": lora_request.path, "r": config["r"], "lora_alpha": config["lora_alpha"]}
        fake_cuda.note("generate", prompts=prompts, params=[vars(p) for p in params], lora=lora)
        return [
            SimpleNamespace(outputs=[SimpleNamespace(text=f"vllm:{p.seed}:{j}") for j in range(p.n)]) for p in params
        ]

    chat = generate  # the call of the engine-in-the-job code this replaced
