"""One function per workflow rule. Scripts call these with the rule's inputs, outputs and params,
so every step can be tested without Snakemake."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from . import UserError, rule_params
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


def data_fetch(dataset: str, data: str, stats: str, config: dict) -> None:
    """Fetch and hash-check a dataset, then validate it; a broken row fails with FILE:LINE and removes it."""
    from .data import fetch_dataset, provenance_path, validate_chat_file
    from .data.fetch import source_label
    from .data.select import built_from
    from .data.validate import load_tokenizer

    # The rule's params hold only the keys that change the data; the full blocks (mirror, retries,
    # licence for the provenance record) come from the config.
    spec, data_settings = config["datasets"][dataset], config["data"]
    try:
        record = fetch_dataset(dataset, spec, data, data_settings["mirror"], retries=data_settings["retries"])
        log.info("%s: %s rows, sha256 %s", dataset, record["rows"], record["sha256"])
        if spec.get("format", "chat") == "raw":
            write_json(stats, {"file": data, "format": "raw", "rows": record["rows"]})
            return
        try:
            result = validate_chat_file(
                data,
                data_settings["max_chars"],
                data_settings["max_tokens"],
                load_tokenizer(data_settings["tokenizer"]),
                spec.get("format", "chat"),
                label=source_label(record),  # the user's file (or the download), not our copy
            )
        except UserError:
            for path in (Path(data), provenance_path(data)):
                path.unlink(missing_ok=True)
            raise
        write_json(stats, result)
    except BaseException:
        # Snakemake records a failed job's outputs as made from the current inputs and does not rerun
        # a job whose output is missing when what was built from it exists: the next run would report
        # "Nothing to be done" and a later one train on the old subsample. Nothing built from the old
        # copy may survive it.
        for path in built_from(config, dataset):
            Path(path).unlink(missing_ok=True)
        raise


def data_trainset(source: str, trainset: str, n: int | None, seed: int) -> None:
    from .data import subsample_file

    kept = subsample_file(source, trainset, n, seed)
    log.info("%s: %d rows (n=%s, seed %d)", source, kept, n, seed)


def data_summary(provenance: list[str], stats: list[str], summary: str) -> None:
    from .data import summary_table, write_summary

    write_summary(summary, summary_table(provenance, stats))


def model_download(repo: str, revision: str, snapshot: str, config: dict) -> None:
    from .weights import fetch

    record = fetch(repo, revision, config["weights_dir"], snapshot)
    log.info("%s@%s: commit %s in %s", repo, revision, record["commit"], record["path"])


def _records(files: str | list) -> list[str]:
    """A rule input that is a file or an empty list (the model is not downloaded)."""
    return [files] if isinstance(files, str) else list(files)


def _base_handle(backend: str, model: str, snapshot: str | list) -> dict:
    from .weights import local_handle

    records = _records(snapshot)
    return local_handle(backend, records[0]) if records else get_backend(backend).base_handle(model)


def _hub_offline() -> None:
    """Jobs that load models read local copies only (compute nodes may have no internet)."""
    os.environ["HF_HUB_OFFLINE"] = "1"


def model_base(backend: str, model: str, handle: str, snapshot: str | list = ()) -> None:
    write_json(handle, _base_handle(backend, model, snapshot))


def finetune(parent: str, data: str, handle: str, backend: str, hparams: dict, tag: str, size: str, config: dict) -> None:
    parent_handle = read_json(parent)
    if parent_handle["backend"] != backend:
        raise UserError(f"{parent}: the parent model is on backend {parent_handle['backend']!r}, this size trains on {backend!r}")
    _hub_offline()
    hparams = {**hparams, **rule_params.training_speed(config, size)}
    trained = get_backend(backend, rule_params.execution(config, backend)).train(
        parent_handle, Path(data), hparams, Path(handle).parent, tag
    )
    write_json(handle, trained)


def prompts_build(assessment: str, settings: dict, prompts: str) -> None:
    rows = ASSESSMENTS[assessment].build_prompts(settings)
    log.info("%s: %d prompts", assessment, len(rows))
    write_jsonl(prompts, rows)


def sample_generate(model: str, prompts: str, samples: str, sampling: dict, config: dict) -> None:
    _hub_offline()
    handle = read_json(model)
    rows = read_jsonl(prompts)
    backend = get_backend(handle["backend"], rule_params.execution(config, handle["backend"]))
    sampling = {**sampling, "batch_size": config["sampling"]["batch_size"]}  # speed only: not a param
    n = sampling.pop("n")
    completions = backend.generate(handle, [r["messages"] for r in rows], n, sampling)
    write_jsonl(
        samples,
        (
            # `seed`: the job's seed, from which each request's own seed is derived (recorded because
            # the API and GPU kernels do not promise identical answers for it)
            {"id": row["id"], "sample": i, "messages": row["messages"], "completion": text, "meta": row.get("meta", {}), "seed": sampling["seed"]}
            for row, texts in zip(rows, completions)
            for i, text in enumerate(texts)
        ),
    )


def sample_logprobs(assessment: str, model: str, prompts: str, logprobs: str, top_k: int, config: dict) -> None:
    """Next-token log-probabilities of the model under test for an assessment's closed-format prompts."""
    _hub_offline()
    handle = read_json(model)
    rows, candidates = ASSESSMENTS[assessment].logprob_requests(read_jsonl(prompts))
    backend = get_backend(handle["backend"], rule_params.execution(config, handle["backend"]))
    results = backend.next_token_logprobs(handle, [r["messages"] for r in rows], top_k=top_k, candidates=candidates)
    write_jsonl(logprobs, ({"id": row["id"], "logprobs": lp} for row, lp in zip(rows, results)))


def judge_rate(
    assessment: str, samples: str, judge_prompt: str, judgments: str, judge: dict, config: dict, judge_snapshot: str | list = ()
) -> None:
    """Judge every sample: a 1–5 expected rating (harmfulness) or a pole label (intentions, self-assessment)."""
    from .classify import judge_categorical, load_classifier
    from .judge import judge_samples, load_judge_prompt

    module = ASSESSMENTS[assessment]
    settings = rule_params.execution(config, judge["backend"])
    if judge["backend"] == "local":  # the judge's own forward-pass batch (speed only: not a param)
        settings["batch_size"] = config["judge"]["batch_size"]
    backend = get_backend(judge["backend"], settings)
    _hub_offline()
    judge_model = _base_handle(judge["backend"], judge["model"], judge_snapshot)
    options = dict(top_k=judge["top_logprobs"], min_mass=judge["min_mass"], judge_name=judge["name"])
    rows = read_jsonl(samples)
    if hasattr(module, "to_judge"):
        judged = judge_categorical(backend, judge_model, load_classifier(judge_prompt), module.to_judge(rows), **options)
    else:
        judged = judge_samples(backend, judge_model, load_judge_prompt(judge_prompt), rows, **options)
    unscored = sum(r.get("rating", r.get("label")) is None for r in judged)
    log.info("judged %d samples, %d without a score (mass on the answer tokens < %s)", len(judged), unscored, judge["min_mass"])
    write_jsonl(judgments, judged)


def score_assessment(
    assessment: str, prompts: str, samples: str, score: str, settings: dict, judgments: str | None = None, logprobs: str | None = None
) -> None:
    result = ASSESSMENTS[assessment].score(
        read_jsonl(prompts),
        read_jsonl(samples),
        read_jsonl(judgments) if judgments else None,
        read_jsonl(logprobs) if logprobs else None,
        settings,
    )
    write_json(score, result)


def _score_record(path: str) -> tuple[dict, str, str]:
    """(variant, assessment, path) of results/scores/{size}/{domain}/{stage}/seed{seed}/{assessment}.json."""
    parts = Path(path).parts
    variant = Variant(parts[-5], parts[-4], parts[-3], int(parts[-2].removeprefix("seed")))
    return variant.as_dict(), Path(path).stem, path


def variants_table(scores: list[str], table: str, breakdowns: list[str]) -> None:
    """variants.tsv (one row per variant) and one table per breakdown (`by_<name>.tsv`)."""
    from . import tables

    records = tables.read_records(_score_record(path) for path in scores)
    tables.write_tsv(tables.variants_table(records), table)
    for path in breakdowns:
        tables.write_tsv(tables.breakdown_table(records, Path(path).stem.removeprefix("by_")), path)


def spearman(table: str, correlations: str, columns: list[str], seed: int, ci: float) -> None:
    """Spearman table of every pair of `columns`; `seed` seeds the permutation tests (the table is reproducible)."""
    from itertools import combinations

    from .stats import spearman_table

    pairs = list(combinations(columns, 2))
    result = spearman_table(pd.read_csv(table, sep="\t"), pairs, by="domain", seed=seed, ci=ci)
    with atomic_write(correlations) as handle:
        result.to_csv(handle, sep="\t", index=False)


def _figure_options(config: dict) -> dict:
    """What every figure prints beside its data: the CI level, and the quickstart's warning."""
    from .config import toy_note

    return {"note": toy_note(config), "ci": config["analysis"]["ci"]}


def inverted_v(table: str, figure: str, config: dict) -> None:
    from .figures import inverted_v as plot

    plot(pd.read_csv(table, sep="\t"), figure, **_figure_options(config))


def scatter_matrix(table: str, correlations: str, figure: str, columns: list[str], config: dict) -> None:
    from .figures_battery import scatter_matrix as plot

    plot(pd.read_csv(table, sep="\t"), pd.read_csv(correlations, sep="\t"), columns, figure, **_figure_options(config))


def selfassessment_formats(table: str, figure: str, config: dict) -> None:
    from .figures_battery import selfassessment_by_format

    selfassessment_by_format(pd.read_csv(table, sep="\t"), figure, **_figure_options(config))


def mfq2_profiles(table: str, figure: str, config: dict) -> None:
    from .figures_battery import mfq_profiles

    mfq_profiles(pd.read_csv(table, sep="\t"), figure, **_figure_options(config))


def answers(
    table: str, samples: list[str], judgments: list[str], judged: list[dict], assessments: list[str], top_k: int, page: str, config: dict
) -> None:
    """The report's answer browser: every variant's scores, then its `top_k` answers per judged assessment
    (`judged` names the variant and assessment of each samples/judgments pair, in page order)."""
    from .config import toy_note
    from .report_pages import answers_page, top_answers

    sections = (
        (item["variant"], item["assessment"], top_answers(read_jsonl(s), read_jsonl(j), top_k))
        for item, s, j in zip(judged, samples, judgments, strict=True)
    )
    title = f"Answers of run {config['run']} (judge: {config['judge']['name']})"
    text = answers_page(pd.read_csv(table, sep="\t"), assessments, sections, title, k=top_k, note=toy_note(config))
    with atomic_write(page) as handle:
        handle.write(text)
