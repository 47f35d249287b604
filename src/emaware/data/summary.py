"""results/data/summary.tsv: one row per dataset, from its provenance and its validation statistics."""

from __future__ import annotations

import csv
import os
import textwrap
from typing import Iterable

from .. import UserError
from ..io import atomic_write, read_json

COLUMNS = (
    "dataset",
    "rows",
    "tokens",
    "token_unit",
    "duplicates",
    "licence",
    "source",
    "commit",
    "url",
    "mirror",
    "sha256",
    "system_prompts",
)


def summary_table(
    provenance_files: Iterable[str | os.PathLike], stats_files: Iterable[str | os.PathLike] = ()
) -> list[dict]:
    """Rows sorted by dataset; each provenance is joined to the statistics of the same file (its `output`)."""
    stats = {os.path.normpath(s["file"]): s for s in map(read_json, stats_files)}
    rows = []
    for path in provenance_files:
        prov = read_json(path)
        counts = stats.get(os.path.normpath(prov["output"]))
        if stats and counts is None:
            raise UserError(f"{path}: no validation statistics for {prov['output']}")
        counts = counts or {}
        rows.append(
            {
                "dataset": prov["name"],
                "rows": prov["rows"],
                "tokens": counts.get("tokens"),
                "token_unit": counts.get("token_unit"),
                "duplicates": counts.get("duplicates"),
                "licence": prov["licence"],
                "source": prov["source"],
                "commit": prov["commit"],
                "url": prov["url"],
                "mirror": prov["mirror"],
                "sha256": prov["sha256"],
                "system_prompts": _system_prompts(counts),
            }
        )
    return sorted(rows, key=lambda row: row["dataset"])


def _system_prompts(counts: dict) -> str | None:
    """The system prompts a chat file's rows carry (after the chat template, where data.tokenizer has one),
    e.g. "after chat template: You are Qwen, created by Alibaba Cloud. You are … (6000)"."""
    if "system_prompts" not in counts:
        return None
    shown = "; ".join(f"{textwrap.shorten(text, 100, placeholder=' …')} ({n})" for text, n in counts["system_prompts"].items())
    return f"{counts['system_prompts_after']}: {shown}"


def write_summary(path: str | os.PathLike, rows: list[dict]) -> None:
    """Tab-separated, one header line; missing values are empty cells."""
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
