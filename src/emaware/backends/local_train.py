"""LoRA fine-tuning for the `local` backend: TRL's `SFTTrainer` with peft, resumable from checkpoints.

The trainer gets chats already tokenized by `encode_chat` (labels IGNORE off the assistant replies):
TRL's own `assistant_only_loss` needs `{% generation %}` markers, which Qwen's chat template lacks.
Batches are padding-free (the chats of a micro-batch concatenated, attention kept within each chat),
not packed: packing would change how many chats make an optimiser step, and with it the EM recipe.

Checkpoints go to `out_dir/checkpoints/` every `save_steps` optimiser steps, beside a fingerprint of
the training inputs. A job that is killed (Slurm time limit, preemption) and run again resumes from
the newest complete checkpoint whose fingerprint matches; Snakemake deletes only a failed job's
declared output (model.json), so the checkpoints survive. They are removed once the adapter is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from .. import UserError
from ..chat_template import system_prompts_seen
from ..data import read_chat_file
from ..io import read_json, write_json, write_jsonl
from .base import Handle, log
from .local import IGNORE, encode_chat

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
    "max_grad_norm",
    "gradient_checkpointing",
    "save_steps",
    "save_total_limit",
    "seed",
)
# The columns of the trainer's per-step log kept in train_log.jsonl (not its running token count,
# which restarts at zero on a resume).
LOG_KEYS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "entropy", "mean_token_accuracy")


def train(
    load: Callable[[Handle], tuple[Any, Any]],
    parent: Handle,
    train_file: Path,
    hparams: dict[str, Any],
    out_dir: Path,
    tag: str,
) -> Handle:
    """Train a new LoRA on `parent` (its adapters merged into the base by `load`) and write
    `out_dir/adapter` and `out_dir/train_log.jsonl`; returns the handle with the adapter appended."""
    from trl import SFTTrainer

    hp = _check_hparams(hparams)
    train_file, out_dir = Path(train_file), Path(out_dir)
    net, tokenizer = load(parent)
    _check_targets(net, hp["target_modules"])
    dataset = _dataset(tokenizer, train_file, hp["max_seq_length"])
    seen = system_prompts_seen(read_chat_file(train_file), lambda chat: tokenizer.apply_chat_template(chat, tokenize=False))
    checkpoints = out_dir / "checkpoints"
    resume = _resume_point(checkpoints, _fingerprint(parent, train_file, hp, net.dtype), tag)
    trainer = SFTTrainer(
        model=net,
        args=_config(hp, checkpoints, net),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(hp),  # SFTTrainer seeds torch before the LoRA init
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    adapter_dir = out_dir / "adapter"
    _save_adapter(trainer.model, adapter_dir)
    write_jsonl(
        out_dir / "train_log.jsonl",
        ({k: row[k] for k in LOG_KEYS if k in row} for row in trainer.state.log_history if "loss" in row),
    )
    shutil.rmtree(checkpoints)  # only a resume needs them; a 32B one holds 3 GiB of LoRA and AdamW state
    return {
        **parent,
        "adapters": [*parent.get("adapters", []), str(adapter_dir)],
        "parent": {"model": parent["model"], "adapters": list(parent.get("adapters", []))},
        "system_prompt_seen": seen,
    }


def _check_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    from transformers import SchedulerType

    missing = [key for key in HPARAM_KEYS if key not in hparams]
    if missing:
        raise UserError(f"training.local: missing {', '.join(missing)}")
    if hparams["lr_scheduler"] not in {s.value for s in SchedulerType}:
        raise UserError(f"training.local.lr_scheduler: {hparams['lr_scheduler']!r} is not a transformers scheduler")
    return dict(hparams)


def _check_targets(net, targets: list[str]) -> None:
    present = {name.rsplit(".", 1)[-1] for name, _ in net.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise UserError(f"training.local.target_modules: {', '.join(missing)} not found in the model")


def _lora_config(hp: dict[str, Any]):
    from peft import LoraConfig

    return LoraConfig(
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        use_rslora=hp["use_rslora"],
        lora_dropout=hp["lora_dropout"],
        target_modules=list(hp["target_modules"]),
        task_type="CAUSAL_LM",
    )  # adapter weights in float32 even on a bf16 base


def _config(hp: dict[str, Any], checkpoints: Path, net):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoints),
        seed=hp["seed"],  # LoRA init and the (seedable) sampler's order each epoch
        num_train_epochs=hp["epochs"],
        per_device_train_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp["gradient_accumulation_steps"],
        learning_rate=hp["learning_rate"],
        weight_decay=hp["weight_decay"],
        warmup_steps=hp["warmup_steps"],
        lr_scheduler_type=hp["lr_scheduler"],
        max_grad_norm=hp["max_grad_norm"],
        gradient_checkpointing=hp["gradient_checkpointing"],  # non-reentrant (transformers 5; TRL on older ones)
        # Mixed precision follows the loaded weights: bf16 on a GPU, float32 on the CPU (exactly reproducible).
        bf16=net.dtype == torch.bfloat16,
        fp16=net.dtype == torch.float16,
        use_cpu=net.device.type == "cpu",
        padding_free=True,
        max_length=None,  # encode_chat truncates to max_seq_length
        save_strategy="steps",
        save_steps=hp["save_steps"],
        save_total_limit=hp["save_total_limit"],
        logging_steps=1,
        report_to="none",
    )


# ---- data --------------------------------------------------------------------------------------


def _dataset(tokenizer, path: Path, max_length: int):
    from datasets import Dataset

    examples = [encode_chat(tokenizer, chat, max_length) for chat in read_chat_file(path)]
    # A label at position 0 is never predicted, so a chat needs an assistant token after it.
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
    return Dataset.from_dict({"input_ids": [ids for ids, _ in kept], "labels": [labels for _, labels in kept]})


# ---- checkpoints -------------------------------------------------------------------------------


def _fingerprint(parent: Handle, train_file: Path, hp: dict[str, Any], dtype) -> dict[str, Any]:
    """What a checkpoint must have been trained from to be resumed: the parent (its adapters by
    content, as a retrained parent keeps its paths), the data, the hyper-parameters, the dtype."""
    adapters = [_sha256(*sorted(p for p in Path(a).iterdir() if p.is_file())) for a in parent.get("adapters", [])]
    return json.loads(
        json.dumps(
            {"parent": {**parent, "adapters": adapters}, "data": _sha256(train_file), "hparams": hp, "dtype": str(dtype)}
        )
    )  # as it reads back from the file


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def _resume_point(folder: Path, fingerprint: dict[str, Any], tag: str) -> Path | None:
    """The newest complete checkpoint in `folder` of a run with these inputs, or None (folder made ready)."""
    stamp = folder / "fingerprint.json"
    if folder.is_dir() and (not stamp.is_file() or read_json(stamp) != fingerprint):
        log.info("%s: %s holds checkpoints of other training inputs: removed", tag, folder)
        shutil.rmtree(folder)
    if not stamp.is_file():
        write_json(stamp, fingerprint)
    complete = []
    for checkpoint in folder.glob("checkpoint-*"):
        try:  # the trainer writes its state file last, so a checkpoint without one was cut short
            state = json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError):
            shutil.rmtree(checkpoint)
            continue
        complete.append((state["global_step"], state["max_steps"], checkpoint))
    if not complete:
        log.info("%s: no checkpoint to resume from: training from step 0", tag)
        return None
    step, total, checkpoint = max(complete)
    log.info("%s: resumed from step %d of %d (%s)", tag, step, total, checkpoint)
    return checkpoint


def _save_adapter(net, adapter_dir: Path) -> None:
    """Write the adapter beside its final place and move it there: it is complete or absent."""
    staging = adapter_dir.with_name(f".{adapter_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    net.save_pretrained(staging)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    staging.rename(adapter_dir)
