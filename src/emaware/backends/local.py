"""The `local` backend: LoRA fine-tuning (local_train.py: TRL's SFTTrainer with peft), sampling with
vLLM when it can (local_vllm.py), else `model.generate`, next-token log-probabilities from one
forward pass, and exact log-probabilities of whole candidate replies from two.

Settings (the config's `backends.local` block): `dtype` (auto | bfloat16 | float16 | float32; always
float32 on CPU), `device` (auto | cpu | cuda | cuda:N), `batch_size` (prompts per forward pass, default 16),
`vllm` (use vLLM for sampling when installed and on a GPU, default true), `max_model_len` (vLLM's
context, default 4096), `vllm_args` (extra `vllm.LLM` arguments), `cache` (the job's answer cache file,
set by the workflow: local_cache.py).
"""

from __future__ import annotations

import gc
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import LogitsProcessorList

from .. import UserError
from ..worktime import model_loaded, model_work
from . import local_vllm
from .base import Backend, Conversation, Handle
from .local_cache import CANDIDATES, GENERATE, LOGPROBS, AnswerCache, model_identity
from .seeded_sampling import SeededSampler, request_seeds

IGNORE = -100  # label of tokens that carry no loss
CHUNK = 256  # conversations sampled between two writes to the answer cache (what a killed job keeps)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class LocalBackend(Backend):
    name = "local"

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        # One loaded model at a time (key, model, tokenizer): a GPU rarely holds two.
        self._loaded: tuple[Any, Any, Any] | None = None
        self._caches: dict[tuple, AnswerCache] = {}

    # ---- train -------------------------------------------------------------------------------

    @model_work()
    def train(self, parent: Handle, train_file: Path, hparams: dict[str, Any], out_dir: Path, tag: str) -> Handle:
        from .local_train import train

        return train(self._load_fresh, parent, train_file, hparams, out_dir, tag)

    # ---- generate ----------------------------------------------------------------------------

    def generate(
        self, model: Handle, conversations: list[Conversation], n: int, sampling: dict[str, Any]
    ) -> list[list[str]]:
        return self.generate_groups(model, [(conversations, n, sampling)])[0]

    @model_work()
    def generate_groups(
        self, model: Handle, groups: list[tuple[list[Conversation], int, dict[str, Any]]]
    ) -> list[list[list[str]]]:
        """`generate` for several (conversations, n, sampling) groups, e.g. one per assessment, with one
        model load or vLLM engine; what the answer cache holds is not computed again."""
        cache = self._answer_cache(model)
        sampler = "vllm" if local_vllm.usable(self.settings) else "transformers"
        replies: list[list[list[str] | None]] = [
            cache.lookup(GENERATE, [cache.generation(sampler, c, n, s) for c in convs]) if cache else [None] * len(convs)
            for convs, n, s in groups
        ]
        missing = [[i for i, r in enumerate(rs) if r is None] for rs in replies]

        def keep(g: int, i: int, texts: list[str]) -> None:
            replies[g][i] = texts
            if cache:
                convs, n, sampling = groups[g]
                cache.put(GENERATE, cache.generation(sampler, convs[i], n, sampling), texts)

        if any(missing):
            todo = [([convs[i] for i in idx], n, s) for (convs, n, s), idx in zip(groups, missing)]
            done = local_vllm.generate(model, todo, self.settings, _prompt_ids) if sampler == "vllm" else None
            if done is not None:
                for g, idx in enumerate(missing):
                    for i, texts in zip(idx, done[g]):
                        keep(g, i, texts)
            else:
                sampler = "transformers"
                for g, idx in enumerate(missing):
                    convs, n, sampling = groups[g]
                    for start in range(0, len(idx), CHUNK):  # written to the cache chunk by chunk
                        chunk = idx[start : start + CHUNK]
                        for i, texts in zip(chunk, self._hf_generate(model, [convs[i] for i in chunk], n, sampling)):
                            keep(g, i, texts)
        return replies  # type: ignore[return-value]  # every entry is filled

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

    # ---- next-token log-probabilities --------------------------------------------------------

    @model_work()
    def next_token_logprobs(
        self,
        model: Handle,
        conversations: list[Conversation],
        top_k: int = 20,
        candidates: tuple[str, ...] | list[tuple[str, ...]] = (),
    ) -> list[dict[str, float]]:
        """Decoded token text → log-prob of the first assistant token (`candidates`: one tuple for every
        conversation, or a list with each conversation's own).

        Every key is one token's text: the `top_k` most likely tokens plus, for each candidate, the token
        spelling it exactly and the one spelling it with a leading space, where these are single tokens.
        The two spellings stay separate keys (their sum is the candidate's probability; the judge strips
        whitespace and adds them), so no probability is counted twice. Different tokens decoding to the
        same text (e.g. partial UTF-8 bytes shown as "�") are combined by logsumexp.
        """
        per_conversation = candidates if isinstance(candidates, list) else [tuple(candidates)] * len(conversations)
        cache = self._answer_cache(model)
        requests = [cache.logprobs(c, top_k, w) for c, w in zip(conversations, per_conversation)] if cache else []
        found = cache.lookup_whole(LOGPROBS, requests) if cache else None
        if found is not None:
            return found
        net, tokenizer = self._load(model)
        prompts = [_prompt_ids(tokenizer, conv) for conv in conversations]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # one sort over the whole call
        wanted = {w: _single_token_ids(tokenizer, w) for w in dict.fromkeys(per_conversation)}
        results: list[dict[str, float]] = [{} for _ in prompts]
        batch_size = int(self.settings.get("batch_size", 16))
        for start in tqdm(range(0, len(order), batch_size), desc="logprobs", unit="batch"):
            batch = order[start : start + batch_size]
            logprobs = _last_token_logprobs(net, [prompts[i] for i in batch], _pad_id(tokenizer))
            top = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1).indices.tolist()
            for row, i in enumerate(batch):
                results[i] = _token_dict(tokenizer, logprobs[row], set(top[row]) | wanted[per_conversation[i]])
                if cache:
                    cache.put(LOGPROBS, requests[i], results[i])
        return results

    @model_work()
    def candidate_logprobs(
        self, model: Handle, conversations: list[Conversation], candidates: tuple[str, ...] | list[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each candidate as the whole reply: its tokens, then the end-of-turn token(s)
        the chat template puts after an assistant message, so "4" and "42" are exclusive answers however
        many tokens a number takes. Computed, never generated, by `_continuation_logprobs`: one forward
        pass over a batch of prompts and one over all their candidates continuing them."""
        candidates = tuple(candidates)
        cache = self._answer_cache(model)
        requests = [cache.candidates(c, candidates) for c in conversations] if cache else []
        found = cache.lookup_whole(CANDIDATES, requests) if cache else None
        if found is not None:
            return found
        net, tokenizer = self._load(model)
        prompts = [_prompt_ids(tokenizer, conv) for conv in conversations]
        replies = _reply_ids(tokenizer, conversations, candidates)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # one sort over the whole call
        results: list[dict[str, float]] = [{} for _ in prompts]
        batch_size = int(self.settings.get("batch_size", 16))
        for start in tqdm(range(0, len(order), batch_size), desc="candidates", unit="batch"):
            batch = order[start : start + batch_size]
            scores = _continuation_logprobs(net, [prompts[i] for i in batch], [replies[i] for i in batch], _pad_id(tokenizer))
            for i, values in zip(batch, scores):
                results[i] = dict(zip(candidates, values))
                if cache:
                    cache.put(CANDIDATES, requests[i], results[i])
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
        (LoRA on a 32B model needs about 70 GiB: two 80 GB cards give room, not speed; see
        config/README.md, "Training keys"); else one device."""
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

        model_loaded(self.snapshot(handle))
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

    def _answer_cache(self, handle: Handle) -> AnswerCache | None:
        """The job's answer cache (`settings["cache"]`, set by the workflow's steps) for this model."""
        if not self.settings.get("cache"):
            return None
        key = _handle_key(handle)
        if key not in self._caches:
            device = self._device()
            identity = model_identity(handle, str(self._dtype(device)), device.type)
            self._caches[key] = AnswerCache(self.settings["cache"], identity)
        return self._caches[key]

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
    """Log-softmax of the next-token logits after each prompt [batch, vocab], one forward pass."""
    return _prompt_pass(net, prompts, pad_id)[0].cpu()


def _prompt_pass(net, prompts: list[list[int]], pad_id: int):
    """(log-softmax of the next-token logits after each prompt [batch, vocab], the prompts' KV cache,
    their attention mask [batch, width]), from one forward pass.

    Prompts are left-padded; position ids count real tokens only, so a padded prompt is scored
    exactly as it would be alone.
    """
    ids, mask = _pad(prompts, pad_id, left=True)
    ids, mask = ids.to(net.device), mask.to(net.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(net.forward).parameters else {}
    with torch.inference_mode():
        out = net(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
    return torch.log_softmax(out.logits[:, -1].float(), dim=-1), out.past_key_values, mask


def _reply_ids(tokenizer, conversations: list[Conversation], candidates: tuple[str, ...]) -> list[list[list[int]]]:
    """Per conversation, each candidate's tokens as a whole reply: the candidate and the end-of-turn
    text that the chat template writes after an assistant message (its trailing whitespace left out, as
    in the training labels: generation stops at the end-of-turn token)."""
    tokenized: dict[str, list[list[int]]] = {}  # by end-of-turn text: the same for every conversation of most templates
    replies = []
    for conversation in conversations:
        prompt = render_chat(tokenizer, conversation, add_generation_prompt=True)
        turn = render_chat(tokenizer, [*conversation, {"role": "assistant", "content": candidates[0]}])
        end = turn[len(prompt) + len(candidates[0]) :].rstrip()
        if not (turn.startswith(prompt + candidates[0]) and end):
            raise UserError(
                f"{tokenizer.name_or_path}: the chat template does not write an assistant reply right after the"
                " generation prompt and end it with an end-of-turn token, so a whole reply cannot be scored"
            )
        if end not in tokenized:
            tokenized[end] = [tokenizer(c + end, add_special_tokens=False)["input_ids"] for c in candidates]
        replies.append(tokenized[end])
    return replies


def _continuation_logprobs(net, prompts: list[list[int]], continuations: list[list[list[int]]], pad_id: int) -> list[list[float]]:
    """Log-probability of each continuation after its prompt (`continuations[p]`: prompt p's, as token
    ids), from two forward passes.

    The first runs the left-padded prompts and keeps their KV cache and the log-probs of each
    continuation's first token. The second continues the cache with one row per prompt: its
    continuations packed one after the other (without their last tokens, which predict nothing), each
    attending to the prompt and to its own earlier tokens only (a 4D mask), at the positions it would
    have right after the prompt. So every continuation is scored as if it alone followed its prompt,
    without a copy of the prompt's cache per candidate (a 0–100 judge has about a hundred). Layers with
    sliding-window attention see the whole prompt here: exact while prompts are shorter than the window.
    """
    first, cache, prompt_mask = _prompt_pass(net, prompts, pad_id)
    # Each packed position: (continuation, index of the token there), for the tokens that predict another.
    packed = [[(c, j) for c, tokens in enumerate(conts) for j in range(len(tokens) - 1)] for conts in continuations]
    length = max(1, *map(len, packed))
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    targets, offsets = torch.zeros_like(ids), torch.zeros_like(ids)
    segments = -1 - torch.arange(length).repeat(len(prompts), 1)  # a padding position is a segment of its own
    for p, row in enumerate(packed):
        for s, (c, j) in enumerate(row):
            tokens = continuations[p][c]
            ids[p, s], targets[p, s], offsets[p, s], segments[p, s] = tokens[j], tokens[j + 1], j, c
    own = (segments[:, :, None] == segments[:, None, :]) & torch.ones(length, length, dtype=torch.bool).tril()
    sees_prompt = prompt_mask.bool().cpu()[:, None, :].expand(-1, length, -1)
    allowed = torch.cat([sees_prompt, own], dim=-1)[:, None]  # [batch, 1, packed queries, prompt + packed keys]
    mask = torch.zeros(allowed.shape, dtype=net.dtype).masked_fill(~allowed, torch.finfo(net.dtype).min)
    positions = prompt_mask.sum(-1, keepdim=True).cpu() + offsets
    device = prompt_mask.device
    with torch.inference_mode():
        logits = net(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), past_key_values=cache
        ).logits
    results = []
    for p, conts in enumerate(continuations):
        used = len(packed[p])
        later = torch.log_softmax(logits[p, :used].float(), dim=-1).gather(-1, targets[p, :used, None].to(device))[:, 0]
        totals = first[p, [tokens[0] for tokens in conts]].double().cpu()
        totals.index_add_(0, segments[p, :used], later.double().cpu())
        results.append(totals.tolist())
    return results


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
