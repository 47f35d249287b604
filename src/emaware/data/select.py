"""Which dataset a domain trains on at each stage, and which of its rows."""

from __future__ import annotations

import logging
import os
import random
from typing import Sequence, TypeVar

from .. import UserError
from ..config import ROLES, assessment_datasets, results_dir
from ..io import atomic_write

log = logging.getLogger(__name__)
T = TypeVar("T")

# Vaugrante, Weckauff & Hagendorff (2026): 800 trivia pairs, 6000 code examples per stage.
PAPER_SIZES = {"trivia": 800, "code": 6000}
# The files the workflow builds directly from a dataset copy (rules data_trainset, prompts_build,
# data_summary in workflow/rules/), under the run's results directory.
TRAINSET = "data/train/{domain}/{role}.jsonl"
PROMPTS = "prompts/{assessment}.jsonl"
SUMMARY = "data/summary.tsv"


def domain_size(domain: str, spec: dict) -> int | None:
    """Rows per stage: `domains.<domain>.n` if given (null = all rows), else the paper's size, else all."""
    return spec["n"] if "n" in spec else PAPER_SIZES.get(domain)


def stage_dataset(domains: dict, domain: str, stage: str) -> str:
    """The dataset `domain` has for a role (`stage`: misaligned or realigned); refuses a missing counterpart."""
    if domain not in domains:
        raise UserError(f"domain {domain!r} is not defined under `domains`")
    name = domains[domain].get(stage)
    if name is None:
        raise UserError(
            f"domain {domain} has no benign counterpart (domains.{domain}.{stage} is null), so its {stage} "
            f"variant cannot be built. Name a benign chat dataset from `datasets` in domains.{domain}.{stage}, "
            f"or leave the {stage} stage of this domain out of the targets."
        )
    return name


def built_from(config: dict, dataset: str) -> list[str]:
    """The workflow's files made from `dataset`'s copy: the domains' training subsamples, the prompts
    of the assessments that read it, and the summary table. A failed refetch must remove them."""
    files = [
        TRAINSET.format(domain=domain, role=role)
        for domain, spec in config["domains"].items()
        for role in ROLES
        if spec.get(role) == dataset
    ]
    files += [PROMPTS.format(assessment=name) for name in config["assessments"] if dataset in assessment_datasets(config, name)]
    return [f"{results_dir(config)}/{path}" for path in (*files, SUMMARY)]


def subsample(rows: Sequence[T], n: int | None, seed: int) -> list[T]:
    """`n` rows drawn with `seed`, kept in their original order; all rows when n is None or ≥ len(rows).

    The draw depends only on (len(rows), n, seed), so two files of equal length whose rows are paired
    (the same questions answered incorrectly and correctly) stay paired.
    """
    if n is None or n >= len(rows):
        return list(rows)
    if n < 1:
        raise UserError(f"subsample size must be at least 1, got {n}")
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


def subsample_file(source: str | os.PathLike, target: str | os.PathLike, n: int | None, seed: int) -> int:
    """Write `n` lines of JSONL file `source` to `target`, byte for byte; return how many.

    Lines are split on b"\n" only, as validate_chat_file counts them (text mode would also split on
    "\r" and rewrite "\r\n"), so the rows drawn are the rows that were validated.
    """
    with open(source, "rb") as handle:
        lines = [line if line.endswith(b"\n") else line + b"\n" for line in handle if line.strip()]
    if n is not None and n > len(lines):
        log.warning("%s has %d rows, fewer than the %d asked for: using all of them", source, len(lines), n)
    kept = subsample(lines, n, seed)
    with atomic_write(target, "wb") as handle:
        handle.writelines(kept)
    return len(kept)
