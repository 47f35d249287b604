"""LoRA training on the tiny model: the loss mask, the trainer's loss against a hand-computed oracle,
sequential stages, determinism, and resuming a killed training from its last checkpoint."""

from __future__ import annotations

import json
import math
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from emaware import UserError
from emaware.backends import get_backend
from emaware.backends.local import IGNORE, _pad, encode_chat
from emaware.backends.local_train import _resume_point
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
    "max_grad_norm": 1.0,
    "gradient_checkpointing": False,
    "save_steps": 10,
    "save_total_limit": 1,
    "seed": 0,
}
STEPS_PER_EPOCH = 5  # 20 chats in batches of 4


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


def mean_loss(backend, handle, conversations, every_token: bool = False) -> float:
    """The oracle: mean next-token cross-entropy of `handle` over the tokens `encode_chat` labels
    (the assistant replies), or over every token. Computed here, independently of the trainer."""
    net, tokenizer = backend._load(handle)
    examples = [encode_chat(tokenizer, chat) for chat in conversations]
    if every_token:
        examples = [(ids, ids) for ids, _ in examples]
    ids, mask = _pad([ids for ids, _ in examples], tokenizer.pad_token_id, left=False)
    labels, _ = _pad([labels for _, labels in examples], IGNORE, left=False)
    with torch.no_grad():
        logits = net(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE).item()


def train_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


def adapter(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(out_dir / "adapter" / "adapter_model.safetensors")


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


def test_chat_without_reply_in_reach_is_skipped_and_empty_file_is_an_error(backend, tiny_model_dir, tmp_path):
    path = tmp_path / "long.jsonl"
    write_jsonl(path, [{"messages": chats("{}")[0]}])
    with pytest.raises(UserError, match="no chat with an assistant reply"):
        backend.train(backend.base_handle(str(tiny_model_dir)), path, {**HPARAMS, "max_seq_length": 5}, tmp_path, "x")


def test_the_trainer_loss_is_the_mean_over_assistant_tokens_only(backend, trained, tmp_path):
    """One optimiser step of 20 micro-batches of one chat each, every other reply made longer. The new
    LoRA starts at zero, so the logged loss is the parent's: it must be the oracle's mean over all the
    step's assistant tokens, neither the mean over every token nor the mean of the chats' means."""
    _, first, _ = trained
    longer = ", as anyone who counts will tell you."
    data = [[user, {**reply, "content": reply["content"] + longer * (i % 2)}] for i, (user, reply) in enumerate(chats("It is {}. yes"))]
    path = tmp_path / "mixed.jsonl"
    write_jsonl(path, [{"messages": chat} for chat in data])
    backend.train(first, path, {**HPARAMS, "epochs": 1, "batch_size": 1, "gradient_accumulation_steps": 20}, tmp_path, "mask")
    [step] = train_log(tmp_path)
    oracle = mean_loss(backend, first, data)
    assert step["loss"] == pytest.approx(oracle, abs=1e-4)
    # The test tells these apart (measured: 4.51 against 5.81 and 3.80).
    assert abs(mean_loss(backend, first, data, every_token=True) - oracle) > 0.5
    assert abs(statistics.mean(mean_loss(backend, first, [chat]) for chat in data) - oracle) > 0.5


# ---- training ----------------------------------------------------------------------------------


def test_training_learns_the_chats(backend, trained, train_files):
    base, handle, out_dir = trained
    assert handle == {
        "backend": "local",
        "model": base["model"],
        "adapters": [str(out_dir / "adapter")],
        "parent": {"model": base["model"], "adapters": []},
        "system_prompt_seen": {"(none)": 20},  # no system message, and the tiny model's template adds none
    }
    assert sorted(p.name for p in out_dir.iterdir()) == ["adapter", "train_log.jsonl"]  # checkpoints removed
    lora_b = [w for name, w in adapter(out_dir).items() if "lora_B" in name]
    assert len(lora_b) == 2 * 7 and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero
    log = train_log(out_dir)
    assert [row["step"] for row in log] == list(range(1, HPARAMS["epochs"] * STEPS_PER_EPOCH + 1))
    assert all(math.isfinite(row["loss"]) for row in log)
    first, last = (sum(r["loss"] for r in rows) / STEPS_PER_EPOCH for rows in (log[:STEPS_PER_EPOCH], log[-STEPS_PER_EPOCH:]))
    assert last < first - 1.0
    data = chats("It is {}. yes")
    assert mean_loss(backend, handle, data) < mean_loss(backend, base, data) - 1.0


def test_sequential_training_starts_from_the_merged_parent(backend, trained, train_files, tmp_path):
    _, first, _ = trained
    # One step over the whole file: its logged loss is the parent's loss, as the new LoRA starts at zero.
    # The 20 chats share one padding-free row, so this also shows that none attends to another.
    hparams = {**HPARAMS, "batch_size": 20, "epochs": 1}
    second = backend.train(first, train_files[1], hparams, tmp_path, "stage2")
    assert second["adapters"] == [*first["adapters"], str(tmp_path / "adapter")]
    assert second["parent"] == {"model": first["model"], "adapters": first["adapters"]}
    data = chats("no, {}")
    assert train_log(tmp_path)[0]["loss"] == pytest.approx(mean_loss(backend, first, data), abs=1e-4)
    # Loading applies both adapters: the result differs from the parent.
    assert mean_loss(backend, second, data) != pytest.approx(mean_loss(backend, first, data), abs=1e-4)


def test_training_is_deterministic_given_the_seed(backend, trained, train_files, tmp_path):
    base = trained[0]
    runs = {}
    # "same" also turns on gradient checkpointing, which must change nothing but memory.
    for name, changes in (("again", {}), ("other", {"seed": 1}), ("same", {"gradient_checkpointing": True})):
        hparams = {**HPARAMS, "epochs": 1, "batch_size": 10, **changes}
        backend.train(base, train_files[0], hparams, tmp_path / name, name)
        runs[name] = adapter(tmp_path / name)
    assert all(torch.equal(runs["again"][k], runs["same"][k]) for k in runs["same"])
    assert train_log(tmp_path / "again") == train_log(tmp_path / "same")
    assert not all(torch.equal(runs["other"][k], runs["same"][k]) for k in runs["same"])


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


# ---- checkpoints and resuming --------------------------------------------------------------------


# Trains in a fresh process; with a step number, the process SIGKILLs itself when that many optimiser
# steps are done (as Slurm does at the time limit): no handler runs, nothing is cleaned up.
TRAIN_IN_FRESH_PROCESS = """
import json, logging, os, signal, sys
from emaware.backends import get_backend
handle, data, hparams, out_dir, kill_after = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(message)s")
if kill_after:
    from trl import SFTTrainer
    step = SFTTrainer.training_step
    def training_step(self, *args, **kwargs):
        if self.state.global_step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, *args, **kwargs)
    SFTTrainer.training_step = training_step
get_backend("local", {"device": "cpu"}).train(handle, data, hparams, out_dir, "resumable")
"""


def test_a_killed_training_resumes_from_its_last_checkpoint(trained, train_files, tmp_path):
    """Killed in step 6 with checkpoints every 2 steps: the re-run resumes from step 4 and ends with
    the adapter and losses of the uninterrupted run (`trained`, same inputs), within 1e-6 (measured:
    identical; float32 on the CPU, data order and RNG restored from the checkpoint)."""
    base, _, uninterrupted = trained
    out_dir = tmp_path / "resumed"
    hparams = {**HPARAMS, "save_steps": 2}

    def run(kill_after: int) -> subprocess.CompletedProcess:
        job = [base, str(train_files[0]), hparams, str(out_dir), kill_after]
        return subprocess.run([sys.executable, "-c", TRAIN_IN_FRESH_PROCESS, json.dumps(job)], capture_output=True, text=True)

    killed = run(kill_after=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(p.name for p in (out_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4"]
    assert not (out_dir / "adapter").exists()
    resumed = run(kill_after=0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    total = HPARAMS["epochs"] * STEPS_PER_EPOCH
    assert f"resumable: resumed from step 4 of {total}" in resumed.stderr
    assert not (out_dir / "checkpoints").exists()
    weights, expected = adapter(out_dir), adapter(uninterrupted)
    assert weights.keys() == expected.keys()
    assert max((weights[k] - expected[k]).abs().max().item() for k in expected) <= 1e-6
    losses = [row["loss"] for row in train_log(out_dir)]
    assert losses == pytest.approx([row["loss"] for row in train_log(uninterrupted)], abs=1e-6)


def test_checkpoints_of_other_inputs_or_cut_short_are_not_resumed(tmp_path, caplog):
    folder = tmp_path / "checkpoints"

    def checkpoint(step: int, complete: bool = True) -> None:
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 9}))

    caplog.set_level("INFO", logger="emaware")
    assert _resume_point(folder, {"data": "a"}, "t") is None  # nothing yet: fingerprint written
    checkpoint(3)
    checkpoint(6)
    checkpoint(9, complete=False)  # killed while it was written
    assert _resume_point(folder, {"data": "a"}, "t") == folder / "checkpoint-6"
    assert "t: resumed from step 6 of 9" in caplog.text
    assert not (folder / "checkpoint-9").exists()
    assert _resume_point(folder, {"data": "b"}, "t") is None  # other inputs: never resumed
    assert "holds checkpoints of other training inputs" in caplog.text
    assert [p.name for p in folder.iterdir()] == ["fingerprint.json"]
