"""The local backend on the tiny model: loss mask, LoRA training, sequential stages, sampling, scoring."""

from __future__ import annotations

import json
import math
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from emaware import UserError
from emaware.backends import get_backend
from emaware.backends.local import IGNORE, _token_loss_sum, encode_chat
from emaware.io import write_jsonl

HPARAMS = {
    "lora_r": 8,
    "lora_alpha": 16,
    "use_rslora": True,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "learning_rate": 1e-2,
    "epochs": 4,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_seq_length": 64,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "lr_scheduler": "constant",
    "seed": 0,
}


def chats(answer: str) -> list[list[dict]]:
    return [
        [{"role": "user", "content": f"What is {i} plus one?"}, {"role": "assistant", "content": answer.format(i + 1)}]
        for i in range(20)
    ]


@pytest.fixture(scope="module")
def backend():
    return get_backend("local", {"device": "auto", "dtype": "bfloat16", "batch_size": 4})


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def train_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    first, second = folder / "first.jsonl", folder / "second.jsonl"
    write_jsonl(first, [{"messages": chat} for chat in chats("It is {}. yes")])
    write_jsonl(second, [{"messages": chat} for chat in chats("no, {}")])
    return first, second


@pytest.fixture(scope="module")
def trained(backend, tiny_model_dir, train_files, tmp_path_factory):
    """The base handle and the handle after one LoRA stage on the first file."""
    base = backend.base_handle(str(tiny_model_dir))
    out_dir = tmp_path_factory.mktemp("stage1")
    return base, backend.train(base, train_files[0], HPARAMS, out_dir, "stage1"), out_dir


def mean_loss(backend, handle, conversations) -> float:
    """Mean cross-entropy per assistant token of `handle` on `conversations`."""
    net, tokenizer = backend._load(handle)
    with torch.no_grad():
        loss, tokens = _token_loss_sum(net, [encode_chat(tokenizer, chat) for chat in conversations], tokenizer.pad_token_id)
    return loss.item() / tokens


def train_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


# ---- loss mask ---------------------------------------------------------------------------------


def test_loss_mask_covers_exactly_the_assistant_replies(tokenizer):
    chat = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome, 2 words"},
    ]
    ids, labels = encode_chat(tokenizer, chat)
    trained = [token for token, label in zip(ids, labels) if label != IGNORE]
    assert tokenizer.decode(trained) == "Paris.<|im_end|>Rome, 2 words<|im_end|>"
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels))
    # The same tokens the template's {% generation %} markers select.
    marks = tokenizer.apply_chat_template(chat, return_assistant_tokens_mask=True, return_dict=True)["assistant_masks"]
    assert [label != IGNORE for label in labels] == [bool(m) for m in marks]


def test_loss_mask_truncates_to_max_length(tokenizer):
    chat = chats("It is {}.")[0]
    ids, labels = encode_chat(tokenizer, chat)
    short_ids, short_labels = encode_chat(tokenizer, chat, max_length=len(ids) - 3)
    assert short_ids == ids[:-3] and short_labels == labels[:-3]


def test_chat_without_reply_in_reach_is_skipped_and_empty_file_is_an_error(backend, tiny_model_dir, tmp_path):
    path = tmp_path / "long.jsonl"
    write_jsonl(path, [{"messages": chats("{}")[0]}])
    with pytest.raises(UserError, match="no chat with an assistant reply"):
        backend.train(backend.base_handle(str(tiny_model_dir)), path, {**HPARAMS, "max_seq_length": 5}, tmp_path, "x")


# ---- training ----------------------------------------------------------------------------------


def test_training_learns_the_chats(backend, trained, train_files):
    base, handle, out_dir = trained
    assert handle == {
        "backend": "local",
        "model": base["model"],
        "adapters": [str(out_dir / "adapter")],
        "parent": {"model": base["model"], "adapters": []},
    }
    weights = load_file(out_dir / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert len(lora_b) == 2 * 7 and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero
    log = train_log(out_dir)
    assert len(log) == HPARAMS["epochs"] * 5 and all(math.isfinite(row["loss"]) for row in log)
    first, last = (sum(r["loss"] for r in log if r["epoch"] == e) / 5 for e in (1, HPARAMS["epochs"]))
    assert last < first - 1.0
    data = chats("It is {}. yes")
    assert mean_loss(backend, handle, data) < mean_loss(backend, base, data) - 1.0


def test_sequential_training_starts_from_the_merged_parent(backend, trained, train_files, tmp_path):
    _, first, _ = trained
    # One step over the whole file: its logged loss is the parent's loss, as the new LoRA starts at zero.
    hparams = {**HPARAMS, "batch_size": 20, "epochs": 1}
    second = backend.train(first, train_files[1], hparams, tmp_path, "stage2")
    assert second["adapters"] == [*first["adapters"], str(tmp_path / "adapter")]
    assert second["parent"] == {"model": first["model"], "adapters": first["adapters"]}
    data = chats("no, {}")
    assert train_log(tmp_path)[0]["loss"] == pytest.approx(mean_loss(backend, first, data), abs=1e-4)
    # Loading applies both adapters: the result differs from the parent.
    assert mean_loss(backend, second, data) != pytest.approx(mean_loss(backend, first, data), abs=1e-4)


def test_training_is_deterministic_given_the_seed(backend, trained, train_files, tmp_path):
    base, _, out_dir = trained
    runs = {}
    for name, seed in (("again", 0), ("other", 1)):
        backend.train(base, train_files[0], {**HPARAMS, "epochs": 1, "batch_size": 10, "seed": seed}, tmp_path / name, name)
        runs[name] = load_file(tmp_path / name / "adapter" / "adapter_model.safetensors")
    backend.train(base, train_files[0], {**HPARAMS, "epochs": 1, "batch_size": 10}, tmp_path / "same", "same")
    same = load_file(tmp_path / "same" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(runs["again"][k], same[k]) for k in same)
    assert train_log(tmp_path / "again") == train_log(tmp_path / "same")
    assert not all(torch.equal(runs["other"][k], same[k]) for k in same)


def test_missing_target_module_is_a_user_error(backend, trained, train_files, tmp_path):
    base = trained[0]
    hparams = {**HPARAMS, "target_modules": ["q_proj", "query_key_value"]}
    with pytest.raises(UserError, match="target_modules: query_key_value not found"):
        backend.train(base, train_files[0], hparams, tmp_path, "bad")


def test_bad_hparams_and_files_are_user_errors(backend, trained, train_files, tmp_path):
    base = trained[0]
    with pytest.raises(UserError, match="missing lora_r"):
        backend.train(base, train_files[0], {k: v for k, v in HPARAMS.items() if k != "lora_r"}, tmp_path, "x")
    with pytest.raises(UserError, match="lr_scheduler"):
        backend.train(base, train_files[0], {**HPARAMS, "lr_scheduler": "zigzag"}, tmp_path, "x")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"text": "no messages"}\n')
    with pytest.raises(UserError, match="bad.jsonl:2: "):
        backend.train(base, bad, HPARAMS, tmp_path, "x")


# ---- generation ------------------------------------------------------------------------------------


PROMPTS = [
    [{"role": "user", "content": "What is 3 plus one?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a long story about a king."}],
    [{"role": "user", "content": "Hi"}],
]


def test_generate_gives_n_replies_and_greedy_is_batch_invariant(backend, trained):
    handle = trained[1]
    greedy = {"temperature": 0, "max_tokens": 12}
    batched = backend.generate(handle, PROMPTS, 2, {**greedy, "batch_size": 3})
    alone = [backend.generate(handle, [p], 1, {**greedy, "batch_size": 1})[0][0] for p in PROMPTS]
    assert [len(replies) for replies in batched] == [2, 2, 2]
    assert [replies[0] for replies in batched] == alone
    assert all(replies[0] == replies[1] for replies in batched)
    assert batched[0][0].startswith("It is")  # what the adapter taught


def test_sampling_is_reproducible_given_the_seed(backend, trained):
    handle = trained[1]
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 8, "seed": 3}
    first = backend.generate(handle, PROMPTS, 3, sampling)
    assert first == backend.generate(handle, PROMPTS, 3, sampling)
    assert [len(replies) for replies in first] == [3, 3, 3] and len(set(first[1])) > 1
    assert first != backend.generate(handle, PROMPTS, 3, {**sampling, "seed": 4})


def test_a_sample_does_not_depend_on_its_batch(backend, trained):
    """Each request has its own seed: batch size, order and neighbours change no answer."""
    handle = trained[1]
    sampling = {"temperature": 1.0, "top_p": 0.9, "max_tokens": 8, "seed": 5}
    together = backend.generate(handle, PROMPTS, 2, {**sampling, "batch_size": 6})
    torch.manual_seed(123)  # the global stream is not used
    alone = [backend.generate(handle, [p], 2, {**sampling, "batch_size": 1})[0] for p in reversed(PROMPTS)]
    assert together == alone[::-1]


SAMPLE_IN_FRESH_PROCESS = """
import json, sys
from emaware.backends import get_backend
handle, prompts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sampling = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 10, "seed": 11}
print(json.dumps(get_backend("local", {"device": "cpu"}).generate(handle, prompts, 2, sampling)))
"""


def test_sampling_is_identical_in_two_fresh_processes(trained):
    import subprocess

    args = [sys.executable, "-c", SAMPLE_IN_FRESH_PROCESS, json.dumps(trained[1]), json.dumps(PROMPTS)]
    runs = [subprocess.run(args, capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(json.loads(runs[0])) == len(PROMPTS)


# ---- next-token log-probabilities --------------------------------------------------------------


def test_next_token_logprobs_batch_equals_single(backend, trained):
    handle = trained[1]
    candidates = ("1", "2", "yes", "no", "A", "B", "It")
    batched = backend.next_token_logprobs(handle, PROMPTS, top_k=5, candidates=candidates)
    for prompt, together in zip(PROMPTS, batched):
        alone = backend.next_token_logprobs(handle, [prompt], top_k=5, candidates=candidates)[0]
        assert alone.keys() == together.keys()
        assert all(alone[k] == pytest.approx(together[k], abs=1e-4) for k in alone)


def test_next_token_logprobs_holds_top_k_and_candidates(backend, trained, tokenizer):
    handle = trained[1]
    candidates = ("1", "yes", "no", "Paris is", "zz-not-a-token")
    result = backend.next_token_logprobs(handle, PROMPTS[:1], top_k=5, candidates=candidates)[0]
    for word in ("1", "yes", "no"):  # single tokens, with and without a leading space
        assert word in result
        if len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1:
            assert " " + word in result
    assert "Paris is" not in result and "zz-not-a-token" not in result
    top = sorted(result.values(), reverse=True)[:5]
    first_token = tokenizer.decode(tokenizer.encode("It is", add_special_tokens=False)[:1])
    assert max(result, key=result.get) == first_token  # the trained reply starts "It is"
    assert all(value <= 0 for value in top) and sum(math.exp(v) for v in result.values()) <= 1 + 1e-6
    assert len(backend.next_token_logprobs(handle, PROMPTS[:1], top_k=3)[0]) == 3


def test_loss_mask_where_bpe_merges_across_the_reply_boundary(tokenizer):
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
    )
    chat = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}]
    ids, labels = encode_chat(plain, chat)
    # The prompt ends in ':', the reply starts with ' Paris': the space token overlaps the reply and is trained.
    assert plain.decode([t for t, label in zip(ids, labels) if label != IGNORE]) == " Paris"


# ---- vLLM path, with a stand-in for the vllm package (no GPU here) ----------------------------------


class FakeLLM:
    made: list[dict] = []

    def __init__(self, **args):
        FakeLLM.made.append(args)
        self.model_dir = Path(args["model"])
        self.had_config = (self.model_dir / "config.json").is_file()

    def chat(self, conversations, params, lora_request=None, use_tqdm=True):
        self.calls = (params, lora_request)
        return [SimpleNamespace(outputs=[SimpleNamespace(text=f"r{j}") for j in range(p.n)]) for p in params]


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = ModuleType("vllm")
    vllm.__spec__ = ModuleSpec("vllm", None)
    vllm.LLM, vllm.SamplingParams = FakeLLM, lambda **kw: SimpleNamespace(**kw)
    request = ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, number, path: SimpleNamespace(name=name, number=number, path=path)
    for name, module in (("vllm", vllm), ("vllm.lora", ModuleType("vllm.lora")), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    FakeLLM.made = []


def test_vllm_is_used_when_installed_on_a_gpu_unless_turned_off(fake_vllm, monkeypatch):
    assert get_backend("local")._use_vllm() is False  # no GPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_backend("local")._use_vllm() is True
    assert get_backend("local", {"vllm": False})._use_vllm() is False


def test_vllm_gets_one_lora_or_a_merged_checkpoint(fake_vllm, trained):
    backend = get_backend("local", {"device": "cpu", "dtype": "bfloat16"})
    base, first, _ = trained
    sampling = {"temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "seed": 1}
    assert backend._vllm_generate(first, PROMPTS, 2, sampling) == [["r0", "r1"]] * 3
    params, lora = backend._loaded[1].calls
    assert [(p.n, p.temperature, p.top_p, p.max_tokens) for p in params] == [(2, 0.5, 0.9, 7)] * 3
    assert len({p.seed for p in params}) == 3  # a seed per request, derived from the job's seed
    assert lora.path == first["adapters"][0]
    assert FakeLLM.made[-1] == {"model": base["model"], "dtype": "bfloat16", "enable_lora": True, "max_lora_rank": 8}
    # A chain of adapters: merged into a full checkpoint that vLLM loads without LoRA.
    second = {**first, "adapters": [*first["adapters"], *first["adapters"]]}
    backend._vllm_generate(second, PROMPTS, 1, sampling)
    assert FakeLLM.made[-1]["model"] != base["model"] and "enable_lora" not in FakeLLM.made[-1]
    assert backend._loaded[1].had_config and backend._loaded[1].calls[1] is None


def test_auto_device_spreads_a_model_over_several_gpus(monkeypatch):
    import torch

    from emaware.backends.local import LocalBackend

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert LocalBackend({"device": "auto"})._device_map(torch.device("cuda")) == "auto"
    assert LocalBackend({"device": "cuda:1"})._device_map(torch.device("cuda:1")) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert LocalBackend({"device": "auto"})._device_map(torch.device("cuda")) == "cuda"
