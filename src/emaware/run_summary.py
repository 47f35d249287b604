"""The few lines a finished run prints on the terminal: where its results are, how many answers could
not be scored, and the warnings that change what a result means (they would otherwise sit in logs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import ROLES, active_domains, results_dir, warnings
from .data.select import TRAINSET, domain_size
from .weights import unpinned


def config_warnings(config: dict) -> list[str]:
    """Settings that are valid but undermine a result: printed when the workflow is parsed and at its end."""
    return warnings(config) + unpinned(config)


def summary_lines(config: dict, configfiles: list) -> list[str]:
    root = Path(results_dir(config))
    given = "".join(f" --configfile {path}" for path in configfiles)
    lines = [f"run {config['run']!r}: results in {root}/ (figures/, tables/variants.tsv, stats/spearman.tsv)"]
    lines.append(f"  report: snakemake --report {root}/report.html{given}")
    table = root / "tables/variants.tsv"
    if table.is_file():
        lines += _unscored(pd.read_csv(table, sep="\t"), list(config["assessments"]))
    warned = [f"warning: {text}" for text in config_warnings(config) + _short_trainsets(config, root)]
    correlations = root / "stats/spearman.tsv"
    if correlations.is_file():
        warned += _correlation_warnings(pd.read_csv(correlations, sep="\t"), correlations)
    return lines + warned


def _unscored(table: pd.DataFrame, assessments: list[str]) -> list[str]:
    """Per assessment, the answers without a value over all variants (unparseable, refusals)."""
    lines = []
    for name in assessments:
        counts = {
            kind: int(table[f"{name}_{kind}"].fillna(0).sum())
            for kind in ("n", "unparseable", "refusals")
            if f"{name}_{kind}" in table
        }
        if counts:
            lines.append(f"  {name}: " + ", ".join(f"{value} {kind}" for kind, value in counts.items()))
    return lines


def _short_trainsets(config: dict, root: Path) -> list[str]:
    """Training sets that have fewer rows than the config asks for (the whole file was used)."""
    short = []
    for domain in active_domains(config):
        wanted = domain_size(domain, config["domains"][domain])
        for role in ROLES:
            path = root / TRAINSET.format(domain=domain, role=role)
            if wanted and path.is_file():
                rows = sum(1 for line in path.open("rb") if line.strip())
                if rows < wanted:
                    short.append(f"domain {domain}: its {role} set has {rows} rows, {wanted} asked (domains.{domain}.n)")
    return short


def _correlation_warnings(correlations: pd.DataFrame, path: Path) -> list[str]:
    warned = correlations["warning"].fillna("").astype(str).str.len() > 0
    if not warned.any():
        return []
    first = correlations.loc[warned, "warning"].iloc[0]
    return [f"warning: {int(warned.sum())} of {len(correlations)} correlations in {path} carry a warning (e.g. {first})"]
