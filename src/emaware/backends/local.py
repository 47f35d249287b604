"""The `local` backend: LoRA fine-tuning with transformers + peft, sampling with vLLM when it can, else
`model.generate`, and next-token log-probabilities from one forward pass.

Settings (the config's `backends.local` block): `dtype` (auto | bfloat16 | float16 | float32; always
float32 on CPU), `device` (auto | cpu | cuda | cuda:N), `batch_size` (prompts per forward pass, default 16),
`vllm` (use vLLM for sampling when installed and on a GPU, default true), `vllm_args` (extra `vllm.LLM` arguments).
"""

from __future__ import annotations

import gc
import importlib.util
import inspect
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import LogitsProcessorList

from .. import UserError
from ..data import read_chat_file
from ..io import write_jsonl
from .base import Backend, Conversation, Handle, log
from .seeded_sampling import SeededSampler, request_seeds

IGNORE = -100  # label of tokens that carry no loss
HPARAM_KEYS = (
    "lora_r",
    "lora_alpha",
    "use_rslora",
    "lora_dropout",
    "target_modules",
    "learning_rate",
    "epochs",
    "batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler",
    "seed",
)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class LocalBackend(Backend):
    name = "local"

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        # One loaded model at a time (key, model, tokenizer): a GPU rarely holds two.
        self._loaded: tuple[Any, Any, Any] | None = None

    # ---- train -------------------------------------------------------------------------------

    def train(self, parent: Handle, train_file: Path, hparams: dict[str, Any], out_dir: Path, tag: str) -> Handle:
        from transformers import set_seed

        hp = _check_hparams(hparams)
        out_dir = Path(out_dir)
        set_seed(hp["seed"])  # before the LoRA init, which draws from torch's RNG
        model, tokenizer = self._load_fresh(parent)
        model = _add_lora(model, hp)
        examples = _encode_file(tokenizer, Path(train_file), hp["max_seq_length"])
        rows = _train_loop(model, examples, _pad_id(tokenizer), hp, desc=f"train {tag}")
        adapter_dir = out_dir / "adapter"
        model.save_pretrained(adapter_dir)
        write_jsonl(out_dir / "train_log.jsonl", rows)
        return {
            **parent,
            "adapters": [*parent.get("adapters", []), str(adapter_dir)],
            "parent": {"model": parent["model"], "adapters": list(parent.get("adapters", []))},
        }

    # ---- generate ----------------------------------------------------------------------------

    def generate(
        self, model: Handle, conversations: list[Conversation], n: int, sampling: dict[str, Any]
    ) -> list[list[str]]:
        if self._use_vllm():
            return self._vllm_generate(model, conversations, n, sampling)
        return self._hf_generate(model, conversations, n, sampling)

    def _hf_generate(
        self, handle: Handle, conversations: list[Conversation], n: int, sampling: dict[str, Any]
    ) -> list[list[str]]:
        net, tokenizer = self._load(handle)
        greedy = float(sampling.get("temperature", 1.0)) == 0.0
        prompts = [_prompt_ids(tokenizer, conv) for conv in conversations]
        # Greedy replies are identical, so each conversation is generated once and repeated n times.
        jobs = [(i, s) for i in range(len(prompts)) for s in range(1 if greedy else n)]
        jobs.sort(key=lambda job: -len(prompts[job[0]]))  # similar lengths together: less padding
        seeds = [request_seeds(int(sampling.get("seed", 0)), conv, n) for conv in conversations]
        replies: list[list[str]] = [[""] * n for _ in prompts]
        batch_size = int(sampling.get("batch_size") or self.settings.get("batch_size", 16))
        for start in tqdm(range(0, len(jobs), batch_size), desc="generate", unit="batch"):
            batch = jobs[start : start + batch_size]
            ids, mask = _pad([prompts[i] for i, _ in batch], _pad_id(tokenizer), left=True)
            options = _generate_options(sampling, _pad_id(tokenizer))
            if not greedy:
                options["logits_processor"] = LogitsProcessorList(
                    [SeededSampler([seeds[i][s] for i, s in batch], ids.shape[1], **_nucleus(sampling), device=net.device)]
                )
            with torch.inference_mode():
                out = net.generate(input_ids=ids.to(net.device), attention_mask=mask.to(net.device), **options)
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            for (i, s), text in zip(batch, texts):
                replies[i][s : (n if greedy else s + 1)] = [text] * (n if greedy else 1)
        return replies

    def _use_vllm(self) -> bool:
        return (
            bool(self.settings.get("vllm", True))
            and importlib.util.find_spec("vllm") is not None
            and torch.cuda.is_available()
        )

    def _vllm_generate(
        self, handle: Handle, conversations: list[Conversation], n: int, sampling: dict[str, Any]
    ) -> list[list[str]]:
        from vllm import SamplingParams

        llm, lora = self._vllm_engine(handle)
        # One seed per conversation (from its content, as on the transformers path): vLLM then draws
        # its n samples from that request's own generator, whatever the batch.
        params = [
            SamplingParams(
                n=n,
                temperature=float(sampling.get("temperature", 1.0)),
                top_p=float(sampling.get("top_p", 1.0)),
                max_tokens=int(sampling.get("max_tokens", 600)),
                seed=request_seeds(int(sampling.get("seed", 0)), conv, 1)[0],
            )
            for conv in conversations
        ]
        outputs = llm.chat(conversations, params, lora_request=lora, use_tqdm=True)
        return [[choice.text for choice in out.outputs] for out in outputs]

    def _vllm_engine(self, handle: Handle):
        """A vLLM engine for `handle` and the LoRA request to pass with each call (None without adapter).

        vLLM applies one LoRA per request, so a chain of adapters is merged into a full checkpoint
        in a temporary directory that lives as long as the engine.
        """
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        key = ("vllm", _handle_key(handle))
        if self._loaded and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2][0]
        self._unload()
        adapters = list(handle.get("adapters", []))
        args = {
            "model": handle["model"],
            "dtype": self.settings.get("dtype", "auto"),
            **self.settings.get("vllm_args", {}),
        }
        lora, merged = None, None
        if len(adapters) == 1:
            rank = json.loads((Path(adapters[0]) / "adapter_config.json").read_text())["r"]
            args.update(enable_lora=True, max_lora_rank=next(r for r in (8, 16, 32, 64, 128, 256, 512) if r >= rank))
            lora = LoRARequest("adapter", 1, str(adapters[0]))
        elif len(adapters) > 1:
            merged = tempfile.TemporaryDirectory(prefix="emaware-merged-")
            net, tokenizer = self._load_fresh(handle)
            net.save_pretrained(merged.name)
            tokenizer.save_pretrained(merged.name)
            del net
            self._unload()  # frees the GPU for vLLM
            args["model"] = merged.name
        llm = LLM(**args)
        self._loaded = (key, llm, (lora, merged))  # `merged` keeps the checkpoint on disk as long as the engine
        return llm, lora

    # ---- next-token log-probabilities --------------------------------------------------------

    def next_token_logprobs(
        self, model: Handle, conversations: list[Conversation], top_k: int = 20, candidates: tuple[str, ...] = ()
    ) -> list[dict[str, float]]:
        """Decoded token text → log-prob of the first assistant token.

        Every key is one token's text: the `top_k` most likely tokens plus, for each candidate, the token
        spelling it exactly and the one spelling it with a leading space, where these are single tokens.
        The two spellings stay separate keys (their sum is the candidate's probability; the judge strips
        whitespace and adds them), so no probability is counted twice. Different tokens decoding to the
        same text (e.g. partial UTF-8 bytes shown as "�") are combined by logsumexp.
        """
        net, tokenizer = self._load(model)
        wanted = _single_token_ids(tokenizer, candidates)
        prompts = [_prompt_ids(tokenizer, conv) for conv in conversations]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[dict[str, float]] = [{} for _ in prompts]
        batch_size = int(self.settings.get("batch_size", 16))
        for start in tqdm(range(0, len(order), batch_size), desc="logprobs", unit="batch"):
            batch = order[start : start + batch_size]
            logprobs = _last_token_logprobs(net, [prompts[i] for i in batch], _pad_id(tokenizer))
            top = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1).indices.tolist()
            for row, i in enumerate(batch):
                results[i] = _token_dict(tokenizer, logprobs[row], set(top[row]) | wanted)
        return results

    # ---- loading -----------------------------------------------------------------------------

    def _device(self) -> torch.device:
        name = str(self.settings.get("device", "auto"))
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(name)
        except RuntimeError:
            raise UserError(
                f"backends.local.device: {name!r} is not a torch device (auto, cpu, cuda, cuda:N)"
            ) from None

    def _device_map(self, device: torch.device) -> str:
        """Spread a model over every visible GPU when the device is `auto` and there are several
        (a 32B model in bf16 does not fit one 80 GB card with room to train); else one device."""
        if str(self.settings.get("device", "auto")) == "auto" and torch.cuda.device_count() > 1:
            return "auto"
        return str(device)

    def _dtype(self, device: torch.device):
        name = str(self.settings.get("dtype", "auto"))
        if name != "auto" and name not in DTYPES:
            raise UserError(f"backends.local.dtype: {name!r} is not one of auto, {', '.join(DTYPES)}")
        if device.type == "cpu":
            return torch.float32  # bf16 on CPU is slow, and float32 keeps CPU runs exactly reproducible
        return "auto" if name == "auto" else DTYPES[name]

    def _load_fresh(self, handle: Handle):
        """The handle's model with its adapters merged in order, and its tokenizer (not cached)."""
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self._device()
        tokenizer = AutoTokenizer.from_pretrained(handle["model"])
        net = AutoModelForCausalLM.from_pretrained(
            handle["model"], dtype=self._dtype(device), device_map=self._device_map(device)
        )
        for adapter in handle.get("adapters", []):
            if not (Path(adapter) / "adapter_config.json").is_file():
                raise UserError(f"{adapter}: no LoRA adapter there (adapter_config.json missing)")
            net = PeftModel.from_pretrained(net, adapter).merge_and_unload()
        return net.eval(), tokenizer

    def _load(self, handle: Handle):
        """The handle's model for inference, reused while the same handle is asked for."""
        key = ("hf", _handle_key(handle))
        if not (self._loaded and self._loaded[0] == key):
            self._unload()
            self._loaded = (key, *self._load_fresh(handle))
        return self._loaded[1], self._loaded[2]

    def _unload(self) -> None:
        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _handle_key(handle: Handle) -> tuple:
    return (str(handle["model"]), tuple(str(a) for a in handle.get("adapters", [])))


# ---- chats and tokens ----------------------------------------------------------------------


def render_chat(tokenizer, messages: Conversation, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _prompt_ids(tokenizer, conversation: Conversation) -> list[int]:
    # The template already holds any BOS token, so none is added again.
    return tokenizer(render_chat(tokenizer, conversation, True), add_special_tokens=False)["input_ids"]


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_chat(tokenizer, messages: Conversation, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the chat-templated conversation and labels that are IGNORE except on assistant replies.

    An assistant reply spans from the end of the generation prompt that precedes it to the end of its
    rendered turn (its end-of-turn token included, trailing newline excluded). The spans are found in
    characters by rendering prefixes of the chat, then mapped onto tokens by their offsets, so the mask is
    right whatever the template and however BPE merges across a boundary (a token overlapping a reply
    is trained on).
    """
    text = render_chat(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        turn = render_chat(tokenizer, messages[: i + 1])
        if not (turn.startswith(prompt) and text.startswith(turn)):
            raise UserError(
                f"{tokenizer.name_or_path}: the chat template renders earlier turns differently as the chat"
                " grows, so the assistant tokens cannot be found for the loss mask"
            )
        spans.append((len(prompt), len(turn.rstrip())))
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    labels = [
        token if any(start < span_end and end > span_start for span_start, span_end in spans) else IGNORE
        for token, (start, end) in zip(ids, encoding["offset_mapping"])
    ]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def _encode_file(tokenizer, path: Path, max_length: int) -> list[tuple[list[int], list[int]]]:
    examples = [encode_chat(tokenizer, chat, max_length) for chat in read_chat_file(path)]
    kept = [(ids, labels) for ids, labels in examples if any(label != IGNORE for label in labels[1:])]
    if len(kept) < len(examples):
        log.warning(
            "%s: %d of %d chats have no assistant token within max_seq_length=%d and are skipped",
            path,
            len(examples) - len(kept),
            len(examples),
            max_length,
        )
    if not kept:
        raise UserError(f"{path}: no chat with an assistant reply to train on")
    return kept


def _single_token_ids(tokenizer, candidates: tuple[str, ...]) -> set[int]:
    ids = set()
    for text in candidates:
        for spelling in (text, " " + text):
            tokens = tokenizer.encode(spelling, add_special_tokens=False)
            if len(tokens) == 1:
                ids.add(tokens[0])
    return ids


def _token_dict(tokenizer, logprobs: torch.Tensor, ids: set[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for token in sorted(ids):
        text = tokenizer.decode([token])
        value = float(logprobs[token])
        out[text] = float(np.logaddexp(out[text], value)) if text in out else value
    return out


def _pad(seqs: list[list[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids [batch, width] and attention mask (1 on real tokens)."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def _last_token_logprobs(net, prompts: list[list[int]], pad_id: int) -> torch.Tensor:
    """Log-softmax of the next-token logits after each prompt [batch, vocab], one forward pass.

    Prompts are left-padded; position ids count real tokens only, so a padded prompt is scored
    exactly as it would be alone.
    """
    ids, mask = _pad(prompts, pad_id, left=True)
    ids, mask = ids.to(net.device), mask.to(net.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(net.forward).parameters else {}
    with torch.inference_mode():
        logits = net(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits[:, -1]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def _generate_options(sampling: dict[str, Any], pad_id: int) -> dict[str, Any]:
    # Greedy decoding; sampling is the seeded Gumbel-max processor on top of it. Explicit values so the
    # checkpoint's generation_config (Qwen: top_k 20, repetition_penalty 1.05) changes nothing.
    return {
        "max_new_tokens": int(sampling.get("max_tokens", 600)),
        "pad_token_id": pad_id,
        "repetition_penalty": 1.0,
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }


def _nucleus(sampling: dict[str, Any]) -> dict[str, float]:
    return {"temperature": float(sampling.get("temperature", 1.0)), "top_p": float(sampling.get("top_p", 1.0))}


# ---- LoRA training ---------------------------------------------------------------------------


def _check_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    missing = [key for key in HPARAM_KEYS if key not in hparams]
    if missing:
        raise UserError(f"training.local: missing {', '.join(missing)}")
    return dict(hparams)


def _add_lora(net, hp: dict[str, Any]):
    from peft import LoraConfig, get_peft_model

    targets = list(hp["target_modules"])
    present = {name.rsplit(".", 1)[-1] for name, _ in net.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise UserError(f"training.local.target_modules: {', '.join(missing)} not found in the model")
    config = LoraConfig(
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        use_rslora=hp["use_rslora"],
        lora_dropout=hp["lora_dropout"],
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    net = get_peft_model(net, config)  # adapter weights in float32 even on a bf16 base
    if hp.get("gradient_checkpointing", False):
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        net.enable_input_require_grads()
    return net


def _length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Batches of chats of similar length, in an order drawn from `generator`.

    Sorting by length leaves little padding in a batch of short EM chats and, unlike packing, keeps
    each chat in its own attention window without variable-length attention kernels. The batches
    themselves stay the same every epoch; only their order changes.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]


def _token_loss_sum(net, examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the labelled tokens of a batch, and how many there are."""
    ids, mask = _pad([ids for ids, _ in examples], pad_id, left=False)
    labels, _ = _pad([labels for _, labels in examples], IGNORE, left=False)
    ids, mask, labels = ids.to(net.device), mask.to(net.device), labels.to(net.device)
    logits = net(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())


def _train_loop(net, examples, pad_id: int, hp: dict[str, Any], desc: str) -> list[dict[str, Any]]:
    """AdamW over the LoRA weights; the loss of an optimiser step is the mean over all its assistant tokens."""
    from transformers import SchedulerType, get_scheduler

    if hp["lr_scheduler"] not in {s.value for s in SchedulerType}:
        raise UserError(f"training.local.lr_scheduler: {hp['lr_scheduler']!r} is not a transformers scheduler")
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp["learning_rate"], weight_decay=hp["weight_decay"])
    accumulation = hp["gradient_accumulation_steps"]
    batches_per_epoch = math.ceil(len(examples) / hp["batch_size"])
    total_steps = math.ceil(batches_per_epoch / accumulation) * hp["epochs"]
    scheduler = get_scheduler(
        hp["lr_scheduler"], optimizer, num_warmup_steps=hp["warmup_steps"], num_training_steps=total_steps
    )
    generator = torch.Generator().manual_seed(hp["seed"])
    lengths = [len(ids) for ids, _ in examples]
    rows = []
    net.train()
    with tqdm(total=total_steps, desc=desc, unit="step") as bar:
        for epoch in range(hp["epochs"]):
            batches = _length_grouped_batches(lengths, hp["batch_size"], generator)
            for first in range(0, len(batches), accumulation):
                group = batches[first : first + accumulation]
                tokens = sum(sum(l != IGNORE for l in examples[i][1][1:]) for batch in group for i in batch)
                step_loss = 0.0
                for batch in group:
                    loss, _ = _token_loss_sum(net, [examples[i] for i in batch], pad_id)
                    (loss / tokens).backward()  # dividing by the step's token count makes the sum a mean
                    step_loss += loss.item()
                torch.nn.utils.clip_grad_norm_(params, hp.get("max_grad_norm", 1.0))
                rows.append(
                    {
                        "step": len(rows) + 1,
                        "epoch": epoch + 1,
                        "loss": step_loss / tokens,
                        "lr": scheduler.get_last_lr()[0],
                        "tokens": tokens,
                    }
                )
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}")
                bar.update()
    net.eval()
    return rows
