"""One function per workflow rule. Scripts call these with the rule's inputs, outputs and params,
so every step can be tested without Snakemake."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import UserError, rule_params
from .assessments import ASSESSMENTS, build_prompts
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


def finetune(
    parent: str, data: str, handle: str, backend: str, hparams: dict, system_prompt: str | None, tag: str, size: str, config: dict
) -> None:
    """Fine-tune the parent on `data`, every conversation's system message set as the stage says
    (`system_prompt`; None: as in the data); the handle records the mode and the system texts the model
    saw after its chat template (`system_prompt_seen`)."""
    parent_handle = read_json(parent)
    if parent_handle["backend"] != backend:
        raise UserError(f"{parent}: the parent model is on backend {parent_handle['backend']!r}, this size trains on {backend!r}")
    _hub_offline()
    out_dir = Path(handle).parent
    if system_prompt is not None:
        from .conditions import with_system_prompt
        from .data import read_chat_file

        shown = out_dir / "train.jsonl"
        write_jsonl(shown, ({"messages": with_system_prompt(chat, system_prompt)} for chat in read_chat_file(data)))
        data = str(shown)
    hparams = {**hparams, **rule_params.training_speed(config, size)}
    trained = get_backend(backend, rule_params.execution(config, backend)).train(parent_handle, Path(data), hparams, out_dir, tag)
    log.info("%s: system prompts seen in training: %s", tag, trained["system_prompt_seen"])
    write_json(handle, {**trained, "system_prompt": "as in the data" if system_prompt is None else system_prompt})


def prompts_build(assessment: str, settings: dict, prompts: str) -> None:
    rows = build_prompts(assessment, settings)
    log.info("%s: %d prompts", assessment, len(rows))
    write_jsonl(prompts, rows)


def prompts_build_variant(assessment: str, settings: dict, own: str, others: list[str], prompts: str) -> None:
    """The prompts of an assessment that shows a variant other variants' answers: built from the samples
    of its source assessment, the variant's own (`own`) and each other variant's (`others`)."""
    from .conditions import apply

    answers = {_variant_of(path).path: read_jsonl(path) for path in others}
    rows = apply(ASSESSMENTS[assessment].build_prompts(settings, read_jsonl(own), answers), settings.get("condition"))
    log.info("%s: %d prompts beside the answers of %s", assessment, len(rows), ", ".join(answers))
    write_jsonl(prompts, rows)


def _variant_of(path: str) -> Variant:
    """The variant of a per-variant file: <kind>/{size}/{domain}/{stage}/seed{seed}/<file>."""
    parts = Path(path).parts
    return Variant(parts[-5], parts[-4], parts[-3], int(parts[-2].removeprefix("seed")))


def _assessment_of(path: str) -> str:
    """The assessment a per-variant file is of: samples/<variant>/<assessment>.jsonl, judgments/<variant>/<assessment>.<judge>.jsonl …"""
    return Path(path).name.split(".")[0]


def _job_backend(config: dict, name: str, variant: Variant, role: str):
    """The backend a variant's job uses; a local one keeps its answers in the job's own cache file
    (one per variant and role, so no two jobs write one file at once)."""
    from .config import results_dir

    settings = rule_params.execution(config, name)
    if name == "local":
        settings["cache"] = f"{results_dir(config)}/cache/{variant.path}/{role}.sqlite"
    return get_backend(name, settings)


def sample_variant(
    model: str,
    prompts: list[str],
    samples: list[str],
    sampling: dict,
    top_k: int,
    size: str,
    domain: str,
    stage: str,
    seed: str,
    config: dict,
    logprobs: list[str] = (),
) -> None:
    """Every assessment's sampled answers (and next-token log-probabilities, for those that read them)
    of one variant, from one model load: each kind of request goes to the backend in one call."""
    _hub_offline()
    handle = read_json(model)
    backend = _job_backend(config, handle["backend"], Variant(size, domain, stage, int(seed)), "model")
    rows = {_assessment_of(path): read_jsonl(path) for path in prompts}
    groups = []
    for path in samples:
        options = {**sampling[_assessment_of(path)], "batch_size": config["sampling"]["batch_size"]}  # batch: speed only
        groups.append(([r["messages"] for r in rows[_assessment_of(path)]], options.pop("n"), options))
    for path, (_, _, options), completions in zip(samples, groups, backend.generate_groups(handle, groups), strict=True):
        write_jsonl(
            path,
            (
                # `seed`: the job's seed, from which each request's own seed is derived (recorded because
                # the API and GPU kernels do not promise identical answers for it)
                {"id": row["id"], "sample": i, "messages": row["messages"], "completion": text, "meta": row.get("meta", {}), "seed": options["seed"]}
                for row, texts in zip(rows[_assessment_of(path)], completions)
                for i, text in enumerate(texts)
            ),
        )
    # One call per assessment, as each was batched before jobs covered a whole variant: merging them
    # would change the batches' padding, and with it log-probs in their last float digits.
    for path in logprobs:
        asked, candidates = ASSESSMENTS[_assessment_of(path)].logprob_requests(rows[_assessment_of(path)])
        results = backend.next_token_logprobs(handle, [r["messages"] for r in asked], top_k=top_k, candidates=candidates)
        write_jsonl(path, ({"id": row["id"], "logprobs": lp} for row, lp in zip(asked, results)))


def summaries_write(
    model: str, articles: str, prompts: str, summaries: str, draw: dict, sampling: dict, size: str, domain: str, stage: str, seed: str, config: dict
) -> None:
    """The variant's own summaries of a draw of articles (the training draw of its derived sets)."""
    from .data.articles import load_prompts, load_texts, summary_rows, training_draw

    _hub_offline()
    handle = read_json(model)
    texts = load_texts(articles)
    rows = summary_rows(texts, training_draw(texts, draw["n"], draw["seed"]), load_prompts(prompts))
    if len(rows) < draw["n"]:
        log.warning("%s has %d articles, fewer than the %d asked for: summarising all of them", articles, len(rows), draw["n"])
    backend = _job_backend(config, handle["backend"], Variant(size, domain, stage, int(seed)), "writer")
    options = {**sampling, "batch_size": config["sampling"]["batch_size"]}  # batch: speed only
    completions = backend.generate(handle, [r["messages"] for r in rows], options.pop("n"), options)
    write_jsonl(summaries, ({"id": row["id"], "messages": row["messages"], "completion": replies[0]} for row, replies in zip(rows, completions)))
    log.info("%d summaries of %s", len(rows), articles)


def data_derived(summaries: str, articles: str, other: str, prompts: str, trainset: str, kind: str, draw: dict) -> None:
    """A derived training set from the writer's own summaries and another source's (emaware.data.articles)."""
    from .data.articles import derived_rows, load_prompts, load_texts, training_draw

    texts = load_texts(articles)
    own = {row["id"]: row["completion"] for row in read_jsonl(summaries)}
    rows, left_out = derived_rows(kind, texts, own, load_texts(other), training_draw(texts, draw["n"], draw["seed"]), draw["seed"], load_prompts(prompts))
    if not rows:
        raise UserError(f"{trainset}: no article has an own summary and one of {other} that differ; nothing to train on")
    log.info("%s: %d rows (%s, both orders); %d articles left out (a summary missing or blank, or both the same%s)", trainset, len(rows), kind, left_out, ", or equally long" if kind == "longer" else "")
    write_jsonl(trainset, rows)


def judge_variant(
    samples: list[str],
    judge_prompts: list[str],
    judgments: list[str],
    judge: dict,
    size: str,
    domain: str,
    stage: str,
    seed: str,
    config: dict,
    judge_snapshot: str | list = (),
) -> None:
    """Judge every sample of a variant's judged assessments: a 1–5 expected rating (harmfulness), a pole
    label (intentions, self-assessment) or the aligned and coherent 0–100 values (freeform), one judgments
    file per assessment, from one load of the judge."""
    from . import judge_scale
    from .classify import judge_categorical, load_classifier
    from .judge import judge_samples, load_judge_prompt

    variant = Variant(size, domain, stage, int(seed))
    judge_backend = judge["backend"]
    backend = _job_backend(config, judge_backend, variant, "judge")
    if judge_backend == "local":  # the judge's own forward-pass batch (speed only: not a param)
        backend.settings["batch_size"] = config["judge"]["batch_size"]
    _hub_offline()
    judge_model = _base_handle(judge_backend, judge["model"], judge_snapshot)
    options = dict(top_k=judge["top_logprobs"], min_mass=judge["min_mass"], judge_name=judge["name"])
    # One backend call per assessment (each sorted by length over the whole assessment): merged calls
    # would pad differently and change log-probs in their last float digits.
    for path, prompt_path, out in zip(samples, judge_prompts, judgments, strict=True):
        assessment = ASSESSMENTS[_assessment_of(path)]
        rows = assessment.judged_samples(read_jsonl(path))
        if assessment.judge == "label":
            judged = judge_categorical(backend, judge_model, load_classifier(prompt_path), rows, **options)
            unscored = sum(r["label"] is None for r in judged)
        elif assessment.judge == "scale100":  # the judge prompts come with each sample (its prompt meta)
            judged = judge_scale.judge_samples(backend, judge_model, rows, judge["min_mass"], judge["name"])
            unscored = sum(not judge_scale.scored(r) for r in judged)
        else:
            judged = judge_samples(backend, judge_model, load_judge_prompt(prompt_path), rows, **options)
            unscored = sum(r["rating"] is None for r in judged)
        log.info("%s: judged %d samples, %d without a score (mass on the answer tokens < %s)", out, len(judged), unscored, judge["min_mass"])
        write_jsonl(out, judged)


def score_variant(
    prompts: list[str], samples: list[str], scores: list[str], settings: dict, judgments: list[str] = (), logprobs: list[str] = ()
) -> None:
    """Each assessment's score file of one variant (0–1 score, CI, unparseable answers and breakdowns)."""
    files = {kind: {_assessment_of(p): p for p in paths} for kind, paths in (("prompts", prompts), ("samples", samples), ("judgments", judgments), ("logprobs", logprobs))}

    def rows(kind: str, name: str) -> list[dict] | None:
        return read_jsonl(files[kind][name]) if name in files[kind] else None

    for path in scores:
        name = _assessment_of(path)
        result = ASSESSMENTS[name].score(rows("prompts", name), rows("samples", name), rows("judgments", name), rows("logprobs", name), settings[name])
        write_json(path, result)


def _score_record(path: str) -> tuple[dict, str, str]:
    """(variant, assessment, path) of results/scores/{size}/{domain}/{stage}/seed{seed}/{assessment}.json."""
    return _variant_of(path).as_dict(), Path(path).stem, path


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

    from .correlation import spearman_table

    pairs = list(combinations(columns, 2))
    result = spearman_table(_read_tsv(table), pairs, by="domain", seed=seed, ci=ci)
    with atomic_write(correlations) as handle:
        result.to_csv(handle, sep="\t", index=False)


def _read_tsv(path: str):
    import pandas as pd  # here, not at the top: jobs that never read a table skip importing pandas

    return pd.read_csv(path, sep="\t")


def _figure_options(config: dict) -> dict:
    """What every figure prints beside its data: the CI level, and the quickstart's warning."""
    from .config import toy_note

    return {"note": toy_note(config), "ci": config["analysis"]["ci"]}


def inverted_v(table: str, figure: str, config: dict) -> None:
    from .figures import inverted_v as plot

    plot(_read_tsv(table), figure, **_figure_options(config))


def scatter_matrix(table: str, correlations: str, figure: str, columns: list[str], config: dict) -> None:
    from .figures_battery import scatter_matrix as plot

    plot(_read_tsv(table), _read_tsv(correlations), columns, figure, **_figure_options(config))


def selfassessment_formats(table: str, figure: str, config: dict) -> None:
    from .figures_battery import selfassessment_by_format

    selfassessment_by_format(_read_tsv(table), figure, **_figure_options(config))


def mfq2_profiles(table: str, figure: str, config: dict) -> None:
    from .figures_battery import mfq_profiles

    mfq_profiles(_read_tsv(table), figure, **_figure_options(config))


def recipe_figures(table: str, graph: str, steps: str, stages: dict, scores: list[str], config: dict) -> None:
    from .figures_recipe import recipe_graph, recipe_steps

    options = _figure_options(config)
    recipe_graph(stages, graph, note=options["note"])
    recipe_steps(_read_tsv(table), stages, scores, steps, **options)


def persona_classes(table: str, classes: str, figure: str, config: dict) -> None:
    """tables/persona.tsv (each variant's persona class and why) and its figure, from the variants table."""
    from . import tables
    from .figures_persona import persona_quadrants
    from .persona import persona_table

    persona = persona_table(_read_tsv(table))
    tables.write_tsv(persona, classes)
    persona_quadrants(persona, figure, **_figure_options(config))


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
    text = answers_page(_read_tsv(table), assessments, sections, title, k=top_k, note=toy_note(config))
    with atomic_write(page) as handle:
        handle.write(text)
