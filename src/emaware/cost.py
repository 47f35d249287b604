"""The OpenAI cost of the whole experiment, per rule and model, before anything is paid.

    python -m emaware.cost --config config/openai.yaml [--by-target]   # the estimate table
    python -m emaware.cost --count FILE [FILE ...]                    # rows and tokens of chat files

Run from the workflow's directory. It validates the config like the workflow, needs no API key, no
network and no fetched data, and makes no request. Each dataset is counted from a local copy when there
is one (the workflow's fetched copy, the dataset's `path`, or its copy under `data.mirror`), else from
the `rows` and `tokens` the config declares for it (`datasets.<name>.rows`, `.tokens`, as `--count`
prints them); a prompt set known only by its declared counts is one prompt per row of average length.
The table's footer names the source of every dataset and how tokens were counted (`emaware.tokens`).

Fine-tuning, sampling and logprob requests count for sizes on the openai backend, judging for every
variant when the judge is on openai. Prompts are built by the assessments' own `build_prompts`,
training sets subsampled as the workflow does, and every answer (and the answer a judge reads) is
counted at its token limit: the total is an upper bound, before any cache hit.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import UserError, judge_scale
from .assessments import ASSESSMENTS, build_prompts
from .classify import ORDERS
from .conditions import assessment_of
from .config import (
    BASE_STAGE,
    DATASET_KEYS,
    Variant,
    assessment_datasets,
    assessment_settings,
    dataset_file,
    dataset_names,
    other_variants,
    shaped_like,
    training_hparams,
    variants,
)
from .config import load as load_config
from .data import domain_size, read_chat_file, subsample
from .io import read_jsonl
from .judge import load_judge_prompt
from .pricing import (
    BUDGET_KEY,
    RULES,
    UNBOUNDED_REPLY,
    Budget,
    Estimate,
    chat_estimate,
    training_estimate,
)
from .tokens import chat_tokens, counting_method, encoding_name


class Datasets:
    """Where the estimate reads each dataset: a local copy, else the counts the config declares.
    `sources` records which, per dataset, for the table."""

    def __init__(self, config: dict):
        self.config = config
        self.sources: dict[str, str] = {}
        self._counted: dict[tuple, int] = {}

    def local_copy(self, name: str) -> Path | None:
        """The workflow's fetched copy, else the config's `path`, else the copy under data.mirror."""
        spec, mirror = self.config["datasets"][name], self.config["data"].get("mirror")
        candidates = [("local copy", Path(dataset_file(self.config, name)))]
        candidates += [("local copy", Path(spec["path"]))] if spec.get("path") else []
        candidates += [("mirror copy", Path(mirror) / spec["mirror"])] if mirror and spec.get("mirror") else []
        for kind, path in candidates:
            if path.is_file():
                self.sources[name] = f"{kind} {path}"
                return path
        return None

    def declared(self, name: str) -> tuple[int, int]:
        """(rows, tokens) the config declares for `name`."""
        spec = self.config["datasets"][name]
        if not spec.get("rows") or spec.get("tokens") is None:
            raise UserError(
                f"cannot estimate: dataset {name!r} has no local copy and declares no `rows` and `tokens` "
                f"(set data.mirror, run the data_fetch rules, or add datasets.{name}.rows and .tokens: "
                f"`python -m emaware.cost --count FILE` prints them)"
            )
        self.sources[name] = f"declared in the config ({spec['rows']:,} rows, {spec['tokens']:,} tokens)"
        return int(spec["rows"]), int(spec["tokens"])

    def training_tokens(self, name: str, n: int | None, seed: int, model: str) -> int:
        """Tokens of the `n` rows the workflow trains on (all rows when n is None)."""
        key = (name, n, seed, encoding_name(model))
        if key not in self._counted:  # every size and seed trains on the same rows
            path = self.local_copy(name)
            if path is not None:
                rows = subsample(read_jsonl(path), n, seed)
                self._counted[key] = sum(chat_tokens(r["messages"], model) for r in rows)
            else:
                rows, tokens = self.declared(name)
                self._counted[key] = round(tokens * (rows if n is None else min(n, rows)) / rows)
        return self._counted[key]


@dataclass
class Workload:
    """What one variant asks of the API for one assessment (the same for every variant), in tokens."""

    prompts: list[int]  # sample_generate: each prompt's tokens; each prompt is sampled n times
    n: int
    max_tokens: int  # per answer
    logprob_prompts: list[int]  # sample_logprobs: one next-token request each
    judge_prompts: list[int]  # judge_rate: the judge's prompt without the answer, per judgment


def _max_tokens(config: dict, name: str) -> int:
    return int(config["assessments"][name].get("max_tokens") or config["sampling"].get("max_tokens") or UNBOUNDED_REPLY)


def _local_settings(config: dict, name: str, datasets: Datasets) -> dict | None:
    """An assessment's settings with its datasets' local copies in place of the workflow's files; None when
    one of them has no local copy."""
    settings = assessment_settings(config, name)
    names = assessment_datasets(config, name)
    paths = [datasets.local_copy(dataset) for dataset in names]
    if None in paths:
        return None
    copies = dict(zip(names, map(str, paths)))
    for key in DATASET_KEYS.get(assessment_of(name), ()):
        setting = config["assessments"][name].get(key)
        if setting is not None:
            settings[key] = shaped_like(setting, [copies[dataset] for dataset in dataset_names(setting)])
    return settings


def _prompt_rows(config: dict, name: str, datasets: Datasets) -> list[dict] | None:
    """The prompts of an assessment that every variant shares, as the workflow builds them; None when
    they come from a dataset without a local copy."""
    settings = _local_settings(config, name, datasets)
    return None if settings is None else build_prompts(name, settings)


def _shown_answers_workload(config: dict, name: str, model: str, datasets: Datasets) -> Workload:
    """The workload, for one other variant, of an assessment that shows a variant other variants' answers:
    its prompts built from placeholder answers of the source assessment, each prompt counted with its
    two answers at the source's token limit."""
    assessment, spec = ASSESSMENTS[name], config["assessments"][name]
    source = spec[assessment.answers_of]
    rows, settings = _prompt_rows(config, source, datasets), _local_settings(config, name, datasets)
    if rows is None or settings is None:
        raise UserError(f"cannot estimate {name}: the prompts of {source} or its own datasets have no local copy")
    samples = int(config["assessments"][source].get("samples", 1))

    def answers(label: str) -> list[dict]:
        return [{**row, "sample": i, "completion": f"{label} {i}"} for row in rows for i in range(samples)]

    # Other sources' answers come from the assessment's own datasets; other variants' are placeholders.
    others = {} if assessment.others_from == "datasets" else {"other": answers("other")}
    prompts = assessment.build_prompts({**settings, "seed": 0}, answers("own"), others)
    shown = 2 * _max_tokens(config, source)
    logprob_rows = assessment.logprob_requests(prompts)[0] if assessment.needs_logprobs else []
    return Workload(
        [chat_tokens(p["messages"], model) + shown for p in prompts],
        int(spec.get("samples", 1)),
        _max_tokens(config, name),
        [chat_tokens(r["messages"], model) + shown for r in logprob_rows],
        [],
    )


def workload(config: dict, name: str, model: str, datasets: Datasets) -> Workload:
    """The workload of assessment `name` for one variant (for one other variant, where it shows a variant
    other variants' answers), counted in `model`'s tokens."""
    assessment, spec = ASSESSMENTS[name], config["assessments"][name]
    if assessment.reads_other_variants:
        return _shown_answers_workload(config, name, model, datasets)
    n = int(spec.get("samples", 1))
    max_tokens = _max_tokens(config, name)
    judged = assessment.needs_judge and config["judge"]["backend"] == "openai"
    # The 0–100 judges' prompts come with each question, not from a judge prompt file.
    template = load_judge_prompt(spec["judge_prompt"]) if judged and assessment.judge != "scale100" else None
    prompts = _prompt_rows(config, name, datasets)
    if prompts is None:
        missing = next(d for d in assessment_datasets(config, name) if datasets.local_copy(d) is None)
        return _declared_workload(config, name, missing, model, n, max_tokens, template, datasets)
    logprob_rows = assessment.logprob_requests(prompts)[0] if assessment.needs_logprobs else []
    judge_prompts: list[int] = []
    if judged:
        samples = [{**p, "sample": i, "completion": ""} for p in prompts for i in range(n)]
        if assessment.judge == "scale100":  # an aligned and a coherent judge per sample
            judge_prompts = [chat_tokens(c, model) for s in samples for c in judge_scale.conversations(s)]
        else:
            # A categorical judge reads every sample once per order of its options (classify.ORDERS).
            to_judge, times = assessment.judged_samples(samples), len(ORDERS) if assessment.judge == "label" else 1
            judge_prompts = [chat_tokens(template.conversation(_question(s), ""), model) for s in to_judge] * times
    return Workload(
        [chat_tokens(p["messages"], model) for p in prompts],
        n,
        max_tokens,
        [chat_tokens(r["messages"], model) for r in logprob_rows],
        judge_prompts,
    )


def _question(sample: dict) -> str:
    """The last user turn, which the judge reads as the question."""
    return sample["messages"][-1]["content"]


def _declared_workload(
    config: dict, name: str, dataset: str, model: str, n: int, max_tokens: int, template, datasets: Datasets
) -> Workload:
    """A prompt set known by its declared counts: one prompt per row, each of the average length."""
    assessment = ASSESSMENTS[name]
    if config["datasets"][dataset].get("format") != "prompts" or assessment.needs_logprobs or assessment.judge == "label":
        raise UserError(
            f"cannot estimate {name}: its dataset {dataset!r} has no local copy (set data.mirror or run the "
            f"data_fetch rules); declared counts stand in only for a `format: prompts` set judged as is"
        )
    rows, tokens = datasets.declared(dataset)
    prompts = [tokens / rows] * rows
    overhead = chat_tokens(template.conversation("", ""), model) if template else 0
    judge_prompts = [overhead + t for t in prompts for _ in range(n)] if template else []
    return Workload(prompts, n, max_tokens, [], judge_prompts)


def _training_set(config: dict, variant: Variant) -> tuple[str, int | None] | None:
    """The dataset a fine-tuned variant trains on and its rows (None: all), or None for a set derived from a
    model's outputs, which exists only once that model has written them (not estimated)."""
    train = config["stages"][variant.stage]["train"]
    if "role" in train:
        domain = config["domains"][variant.domain]
        return domain[train["role"]], domain_size(variant.domain, domain)
    return (train["dataset"], None) if "dataset" in train else None


def _copies(config: dict, name: str, variant: Variant) -> int:
    """How often a variant asks an assessment's prompts: once, or once per other variant it is shown."""
    if not ASSESSMENTS[name].reads_other_variants or ASSESSMENTS[name].others_from == "datasets":
        return 1
    return len(other_variants(config, variant, config["assessments"][name]["others"]))


def plan(config: dict, datasets: Datasets | None = None) -> list[Estimate]:
    """One estimate per paid rule run of the experiment a validated `config` describes."""
    datasets = datasets or Datasets(config)
    settings = config["backends"].get("openai", {})
    prices, batch, judge = settings.get("prices") or {}, bool(settings.get("batch_api", False)), config["judge"]
    counted: dict[tuple[str, str], Workload] = {}

    def work(name: str, model: str) -> Workload:
        key = (name, encoding_name(model))  # models sharing a tokenizer share the count
        if key not in counted:
            counted[key] = workload(config, name, model, datasets)
        return counted[key]

    estimates: list[Estimate] = []
    for variant in variants(config):
        size = config["sizes"][variant.size]
        paid = size["backend"] == "openai"
        model = size["model"] if variant.stage == BASE_STAGE else f"ft:{size['model']}"
        trainset = _training_set(config, variant) if paid and variant.stage != BASE_STAGE else None
        if trainset is not None:
            tokens = datasets.training_tokens(*trainset, config["data"]["subsample_seed"], size["model"])
            epochs = training_hparams(config, variant.size, variant.seed).get("n_epochs")
            estimates.append(training_estimate(size["model"], tokens, epochs, prices, variant.path))
        for name in config["assessments"]:
            target = f"{variant.path}/{name}"
            copies = _copies(config, name, variant)
            if paid and copies:
                w = work(name, model)
                replies = copies * len(w.prompts) * w.n * w.max_tokens
                tokens = copies * round(sum(w.prompts))
                estimates.append(chat_estimate("sample_generate", target, model, tokens, replies, prices, batch))
                if w.logprob_prompts:
                    tokens, requests = copies * sum(w.logprob_prompts), copies * len(w.logprob_prompts)
                    estimates.append(chat_estimate("sample_logprobs", target, model, tokens, requests, prices, batch))
            if ASSESSMENTS[name].needs_judge and judge["backend"] == "openai":
                w = work(name, judge["model"])
                tokens = round(sum(w.judge_prompts)) + len(w.judge_prompts) * w.max_tokens  # + the answer read
                estimates.append(
                    chat_estimate("judge_rate", target, judge["model"], tokens, len(w.judge_prompts), prices, batch)
                )
    return estimates


RULE_WIDTH, LABEL_WIDTH = len("total sample_generate"), 44


def format_table(estimates: list[Estimate], budget: float | None, by_target: bool = False) -> str:
    """Per rule: one line per model (or per job with `by_target`), then the rule's total; the grand total."""
    label = "target (model)" if by_target else "model"
    header = f"{'rule':<{RULE_WIDTH}} {label:<{LABEL_WIDTH}} {'jobs':>5} {'input tokens':>15} {'output tokens':>15} {'USD':>10}"
    lines = [header, "-" * len(header)]
    for rule in (r for r in RULES if any(e.rule == r for e in estimates)):
        chosen = [e for e in estimates if e.rule == rule]
        groups: dict[str, list[Estimate]] = defaultdict(list)
        for e in chosen:
            groups[f"{e.target} ({e.model})" if by_target else e.model].append(e)
        lines += [_row(rule, name, group) for name, group in groups.items()]
        lines.append(_row(f"total {rule}", "", chosen))
    note = "(an upper bound: answers at their token limit, no cache hits)"
    total = f"{sum(e.usd for e in estimates):,.2f}"
    lines.append(f"{'TOTAL':<{RULE_WIDTH}} {note:<{len(header) - RULE_WIDTH - 13}} {total:>10}")
    lines.append(f"budget ({BUDGET_KEY}): " + ("none" if budget is None else f"${budget:,.2f}"))
    return "\n".join(lines)


def _row(rule: str, label: str, group: list[Estimate]) -> str:
    inputs, outputs = sum(e.input_tokens for e in group), sum(e.output_tokens for e in group)
    usd = sum(e.usd for e in group)
    return f"{rule:<{RULE_WIDTH}} {label:<{LABEL_WIDTH}} {len(group):>5} {inputs:>15,} {outputs:>15,} {usd:>10,.2f}"


def footer(config: dict, datasets: Datasets) -> str:
    models = sorted({s["model"] for s in config["sizes"].values() if s["backend"] == "openai"} | {config["judge"]["model"]})
    methods = sorted({counting_method(m) for m in models})
    lines = [f"tokens: {method}" for method in methods]
    lines += [f"dataset {name}: {source}" for name, source in sorted(datasets.sources.items())]
    return "\n".join(lines)


def count_files(paths: list[Path], model: str | None) -> str:
    """The `rows` and `tokens` of chat/prompt files, as a dataset declares them."""
    lines = []
    for path in paths:
        conversations = read_chat_file(path)
        tokens = sum(chat_tokens(c, model) for c in conversations)
        lines.append(f"{path}: rows: {len(conversations)}, tokens: {tokens}  ({counting_method(model)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emaware.cost",
        description="Estimate the OpenAI cost of the experiment (run from the workflow's directory; no key, no network).",
    )
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="the workflow's config file")
    parser.add_argument("--schema", type=Path, default=Path("workflow/schemas/config.schema.yaml"))
    parser.add_argument("--by-target", action="store_true", help="one line per job instead of per model")
    parser.add_argument("--count", type=Path, nargs="+", metavar="FILE", help="print the rows and tokens of chat files")
    parser.add_argument("--model", default=None, help="with --count: the model whose tokenizer counts (default GPT-4.1's)")
    args = parser.parse_args(argv)
    try:
        if args.count:
            print(count_files(args.count, args.model))
            return 0
        config = load_config(args.config, args.schema)
        datasets = Datasets(config)
        estimates = plan(config, datasets)
        budget = config["backends"].get("openai", {}).get("budget_usd")
        print(format_table(estimates, budget, args.by_target))
        print(footer(config, datasets))
        Budget(budget).check(sum(e.usd for e in estimates), "the whole experiment")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
