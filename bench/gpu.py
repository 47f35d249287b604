"""Benchmark (not a test): the local backend's throughput at real model shapes with random weights.

Prints tokens/s for sampling (the project's seeded path vs plain `generate(do_sample=True)`), for judge
scoring (one forward pass per prompt, next-token log-probs) and for LoRA SFT (tokens/s and MFU), on
Qwen2 shapes of 0.5B and 7B. Runs on any CUDA machine; `--shape tiny --device cpu` is a smoke run.

    .venv/bin/python bench/gpu.py [--shape 0.5b 7b] [--device cuda] [--batch 64] [--new-tokens 128]

MFU counts 4·N FLOPs per trained token (forward 2N + activation gradients 2N; LoRA leaves the base
weights' gradients out and gradient checkpointing's recomputation is not counted) against
--peak-tflops (H100 SXM bf16 dense: 989).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runnable without installing

from emaware.backends import get_backend  # noqa: E402
from emaware.tinymodel import train_tokenizer  # noqa: E402

# Qwen2.5-Instruct shapes (config.json of the hub models); `tiny` is for a CPU smoke run.
SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=2048, tie_word_embeddings=True),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
def training_defaults() -> dict:
    """The workflow's own `training.local` defaults (the public EM LoRA settings), from the schema."""
    from emaware.io import read_yaml

    local = read_yaml(ROOT / "workflow/schemas/config.schema.yaml")["properties"]["training"]["properties"]["local"]
    return {key: spec["default"] for key, spec in local["properties"].items() if "default" in spec}


def random_model(shape: str, device: str, folder: Path) -> Path:
    """A random-weight Qwen2 of `shape` with a small chat tokenizer, saved under `folder`."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer([], 2000, 32768)
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, bos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    with torch.device(device):
        torch.set_default_dtype(dtype)
        model = Qwen2ForCausalLM(config)
        torch.set_default_dtype(torch.float32)
    # No end-of-sequence token: every sample runs to --new-tokens, so runs are comparable.
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prompts(count: int, words: int) -> list[list[dict]]:
    return [[{"role": "user", "content": " ".join(f"word{(i * 7 + j) % 997}" for j in range(words))}] for i in range(count)]


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_sampling(backend, handle, args) -> dict:
    chats = prompts(args.batch, 32)
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_tokens": args.new_tokens, "seed": 0, "batch_size": args.batch}
    backend.generate(handle, chats[:2], 1, {**sampling, "max_tokens": 2})  # load and warm up
    tokens = args.batch * args.new_tokens
    seeded = timed(lambda: backend.generate(handle, chats, 1, sampling))
    net, tokenizer = backend._load(handle)
    ids = tokenizer.apply_chat_template(chats, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True)
    ids = {k: v.to(net.device) for k, v in ids.items()}
    plain = timed(lambda: net.generate(**ids, do_sample=True, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, top_k=0))
    return {"sampling_tokens_per_s_seeded": tokens / seeded, "sampling_tokens_per_s_plain_generate": tokens / plain}


def bench_judge(backend, handle, args) -> dict:
    chats = prompts(args.batch * 4, args.judge_words)
    backend.next_token_logprobs(handle, chats[:2], top_k=20, candidates=("1", "2"))
    seconds = timed(lambda: backend.next_token_logprobs(handle, chats, top_k=20, candidates=("1", "2", "3", "4", "5")))
    return {"judge_prompts_per_s": len(chats) / seconds}


def bench_sft(backend, handle, args, folder: Path) -> dict:
    from emaware.io import write_jsonl

    rows = [[*chat, {"role": "assistant", "content": chat[0]["content"]}] for chat in prompts(args.sft_rows, 200)]
    write_jsonl(folder / "train.jsonl", ({"messages": r} for r in rows))
    net, tokenizer = backend._load(handle)
    params = sum(p.numel() for p in net.parameters())
    tokens = sum(len(tokenizer.apply_chat_template(r, return_dict=True)["input_ids"]) for r in rows)
    hparams = {
        **training_defaults(),
        "seed": 0,
        "batch_size": args.sft_batch,
        "gradient_accumulation_steps": 1,
        "max_seq_length": 1024,
        "gradient_checkpointing": args.device != "cpu",
    }
    backend._unload()
    seconds = timed(lambda: backend.train(handle, folder / "train.jsonl", hparams, folder / "sft", "bench"))
    tflops = 4 * params * tokens / seconds / 1e12
    return {"sft_tokens_per_s": tokens / seconds, "sft_tflops": tflops, "sft_mfu": tflops / args.peak_tflops, "parameters": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs="+", default=["0.5b", "7b"], choices=list(SHAPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--judge-words", type=int, default=300)
    parser.add_argument("--sft-rows", type=int, default=256)
    parser.add_argument("--sft-batch", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    backend = get_backend("local", {"device": args.device, "dtype": "bfloat16", "batch_size": args.batch, "vllm": False})
    for shape in args.shape:
        with tempfile.TemporaryDirectory() as tmp:
            handle = backend.base_handle(str(random_model(shape, args.device, Path(tmp) / "model")))
            row = {"shape": shape, **bench_sampling(backend, handle, args), **bench_judge(backend, handle, args)}
            row.update(bench_sft(backend, handle, args, Path(tmp)))
            backend._unload()
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
