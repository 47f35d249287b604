"""One function per workflow rule. Scripts call these with the rule's inputs, outputs and params,
so every step can be tested without Snakemake."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from . import UserError
from .assessments import ASSESSMENTS
from .backends import get_backend
from .config import Variant
from .io import atomic_write, read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger("emaware")


def tinymodel_build(spec: str, corpus: list[str], model: str) -> None:
    """Build a tiny random-weight model whose tokenizer is trained on the project's own texts."""
    from .tinymodel import build_tiny_model, load_tiny_spec

    texts = [Path(path).read_text(encoding="utf-8") for path in corpus]
    build_tiny_model(load_tiny_spec(spec), Path(model).parent, texts)


def data_fetch(dataset: str, spec: dict, data_settings: dict, data: str, stats: str) -> None:
    """Fetch and hash-check a dataset, then validate it; a broken row fails with FILE:LINE and removes it."""
    from .data import fetch_dataset, provenance_path, validate_chat_file

    record = fetch_dataset(dataset, spec, data, data_settings["mirror"], retries=data_settings["retries"])
    log.info("%s: %s rows, sha256 %s", dataset, record["rows"], record["sha256"])
    if spec.get("format", "chat") == "raw":
        write_json(stats, {"file": data, "format": "raw", "rows": record["rows"]})
        return
    tokenizer = None
    if data_settings["tokenizer"]:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(data_settings["tokenizer"])
    try:
        result = validate_chat_file(
            data, data_settings["max_chars"], data_settings["max_tokens"], tokenizer, spec.get("format", "chat")
        )
    except UserError:
        for path in (Path(data), provenance_path(data)):
            path.unlink(missing_ok=True)
        raise
    write_json(stats, result)


def data_trainset(source: str, trainset: str, n: int | None, seed: int) -> None:
    from .data import subsample_file

    kept = subsample_file(source, trainset, n, seed)
    log.info("%s: %d rows (n=%s, seed %d)", source, kept, n, seed)


def data_summary(provenance: list[str], stats: list[str], summary: str) -> None:
    from .data import summary_table, write_summary

    write_summary(summary, summary_table(provenance, stats))


def model_base(backend: str, model: str, handle: str) -> None:
    write_json(handle, get_backend(backend).base_handle(model))


def finetune(parent: str, data: str, handle: str, backend: str, backend_settings: dict, hparams: dict, tag: str) -> None:
    parent_handle = read_json(parent)
    if parent_handle["backend"] != backend:
        raise UserError(f"{parent}: the parent model is on backend {parent_handle['backend']!r}, this size trains on {backend!r}")
    trained = get_backend(backend, backend_settings).train(parent_handle, Path(data), hparams, Path(handle).parent, tag)
    write_json(handle, trained)


def prompts_build(assessment: str, source: str, settings: dict, prompts: str) -> None:
    rows = ASSESSMENTS[assessment].build_prompts(settings, read_jsonl(source), source=source)
    log.info("%s: %d prompts", assessment, len(rows))
    write_jsonl(prompts, rows)


def sample_generate(model: str, prompts: str, samples: str, backend_settings: dict, sampling: dict, n: int) -> None:
    handle = read_json(model)
    rows = read_jsonl(prompts)
    backend = get_backend(handle["backend"], backend_settings)
    completions = backend.generate(handle, [r["messages"] for r in rows], n, sampling)
    write_jsonl(
        samples,
        (
            {"id": row["id"], "sample": i, "messages": row["messages"], "completion": text, "meta": row.get("meta", {})}
            for row, texts in zip(rows, completions)
            for i, text in enumerate(texts)
        ),
    )


def judge_rate(samples: str, judge_prompt: str, judgments: str, judge: dict, backend_settings: dict) -> None:
    from .judge import judge_samples, load_judge_prompt

    backend = get_backend(judge["backend"], backend_settings)
    rows = judge_samples(
        backend,
        backend.base_handle(judge["model"]),
        load_judge_prompt(judge_prompt),
        read_jsonl(samples),
        top_k=judge["top_logprobs"],
        min_mass=judge["min_mass"],
        batch_size=judge["batch_size"],
        judge_name=judge["name"],
    )
    unrated = sum(r["rating"] is None for r in rows)
    log.info("judged %d samples, %d without a rating (mass on ratings < %s)", len(rows), unrated, judge["min_mass"])
    write_jsonl(judgments, rows)


def score_assessment(assessment: str, prompts: str, samples: str, score: str, analysis: dict, judgments: str | None = None) -> None:
    module = ASSESSMENTS[assessment]
    result = module.score(
        read_jsonl(prompts), read_jsonl(samples), read_jsonl(judgments) if judgments else None, None, analysis
    )
    write_json(score, result)


def variants_table(scores: list[str], table: str) -> None:
    """One row per variant: size, domain, stage, seed, and each assessment's score, CI and counts."""
    rows: dict[Variant, dict] = {}
    for path in scores:
        parts = Path(path).parts  # results/scores/{size}/{domain}/{stage}/seed{seed}/{assessment}.json
        variant = Variant(parts[-5], parts[-4], parts[-3], int(parts[-2].removeprefix("seed")))
        result = read_json(path)
        name = Path(path).stem
        row = rows.setdefault(variant, variant.as_dict())
        row[name] = result["score"]
        row[f"{name}_ci_lo"], row[f"{name}_ci_hi"] = result["ci"]
        row[f"{name}_n"] = result["n"]
        row[f"{name}_unparseable"] = result.get("unparseable")
    with atomic_write(table) as handle:
        pd.DataFrame([rows[v] for v in sorted(rows)]).to_csv(handle, sep="\t", index=False)


def inverted_v(table: str, figure: str) -> None:
    from .figures import inverted_v as plot

    plot(pd.read_csv(table, sep="\t"), figure)
