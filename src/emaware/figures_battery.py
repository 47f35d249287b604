"""Figures of the assessment battery: scores against each other over variants (Spearman rho annotated),
self-assessment by format, and MFQ-2 profiles per stage beside the exact and the self-predicted profile."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .assessments.common import COUNTED  # noqa: E402
from .figures import (  # noqa: E402
    ALERT,
    NO_DATA,
    category_axis,
    count_text,
    domains_of,
    draw_series,
    finish,
    gaps,
    missing_ci,
    panel_notes,
    proxy,
    save_pdf,
    stages_of,
    span,
    summarise,
    with_base,
    wrap,
)

MARKERS = "osD^v<>P*X"
PANEL = 2.4  # inches per scatter-matrix panel
COUNTS = {key: key for key in COUNTED}  # the count columns of the breakdown tables
EV_MISSING = {"ev_missing": "prompts short of log-prob mass"}
ESTIMATES = {"sampled": dict(marker="o"), "exact": dict(marker="x", ls="--")}  # self-assessment line styles
# MFQ-2 profiles: (legend label, column, its CI columns, style, why a foundation has no value)
PROFILES = (
    ("sampled", "measured", ("measured_ci_lo", "measured_ci_hi"), dict(marker="o"), "no item rating could be parsed"),
    ("exact (log-prob expected rating)", "measured_ev", None, dict(marker="x", ls="--"), "too little mass on 1–5"),
    (
        "self-predicted",
        "predicted",
        ("predicted_ci_lo", "predicted_ci_hi"),
        dict(marker="s", ls=":"),
        "no self-prediction could be parsed",
    ),
)


def scatter_matrix(
    table: pd.DataFrame,
    correlations: pd.DataFrame,
    columns: Sequence[str],
    out: str | Path,
    *,
    note: str | None = None,
    ci: float = 0.95,
) -> None:
    """The scatter matrix of `columns` (see `scatter_matrix_figure`) into the PDF `out`."""
    save_pdf(scatter_matrix_figure(table, correlations, columns, note=note, ci=ci), out)


def scatter_matrix_figure(
    table: pd.DataFrame, correlations: pd.DataFrame, columns: Sequence[str], *, note: str | None = None, ci: float = 0.95
) -> plt.Figure:
    """Every pair of score columns over the variants of the variants table: scatter below the diagonal
    (colour = stage, marker = domain), Spearman rho with its CI (level `ci`), p, N and warning above it,
    read from the Spearman table (`overall` group) so the figure and results/stats/spearman.tsv never
    disagree; on the diagonal, how many variants have the score."""
    k = len(columns)
    rho = correlations[correlations["group"] == "overall"].set_index(["x", "y"])
    domains = list(dict.fromkeys(table["domain"]))
    colours = {stage: f"C{n}" for n, stage in enumerate(stages_of(table))}
    markers = {domain: MARKERS[n % len(MARKERS)] for n, domain in enumerate(domains)}
    fig, axes = plt.subplots(k, k, figsize=(PANEL * k, PANEL * k), squeeze=False)
    drawn: set[str] = set()  # the stages and domains of the points drawn
    for i, y in enumerate(columns):
        for j, x in enumerate(columns):
            ax = axes[i][j]
            if i == j:
                _diagonal(ax, table, x)
            elif i > j:
                pairs = table.dropna(subset=[x, y])
                for (stage, domain), part in pairs.groupby(["stage", "domain"], sort=False):
                    ax.scatter(part[x], part[y], color=colours[stage], marker=markers[domain], s=22)
                    drawn.update([stage, domain])
                ax.set_xlim(-0.05, 1.05)
                ax.set_ylim(-0.05, 1.05)
                ax.grid(alpha=0.3)
                if pairs.empty:  # a partly scored column is told on the diagonal
                    panel_notes(ax, [_unscored(table, c) for c in (x, y)], empty=True)
            else:
                _correlation(ax, rho.loc[(y, x)])  # above the diagonal y precedes x in `columns`
            if i == k - 1 and j < i:
                ax.set_xlabel(x)
            if j == 0 and i > j:
                ax.set_ylabel(y)
    shown = rho.reindex(list(combinations(columns, 2)))  # the pairs drawn
    footer = [
        f"each point: one variant (size × domain × stage × seed); {len(table)} variants in the table",
        f"ρ: Spearman over the N variants that have both scores; {ci * 100:g}% CI: "
        f"{_methods(shown['ci_method'])}; p: {_methods(shown['p_method'])}; ⚠: the Spearman table's warning",
    ]
    legends = [
        ("stage (colour)", [proxy(s, s in drawn, color=c, marker="o", ls="") for s, c in colours.items()]),
        ("domain (marker)", [proxy(d, d in drawn, color="grey", marker=m, ls="") for d, m in markers.items()]),
    ]
    return finish(fig, note, footer, legends)


def _diagonal(ax: plt.Axes, table: pd.DataFrame, column: str) -> None:
    """A score's name and how many variants have it (and why the others do not)."""
    scored = int(table[column].notna().sum())
    lines = [f"{scored} of {len(table)} variants scored"]
    lines += [wrap(reason, PANEL, 8)] if (reason := _unscored(table, column)) else []
    ax.text(0.5, 0.6, column, ha="center", va="bottom", fontsize="large", transform=ax.transAxes)
    colour = ALERT if scored < len(table) else "black"
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="top", fontsize=8, color=colour, transform=ax.transAxes)
    ax.set_axis_off()


def _unscored(table: pd.DataFrame, column: str) -> str | None:
    """Which variants lack the score and why, as "<column>: no data for k variants (<counts>)"; None if none."""
    rows = table[table[column].isna()]
    if rows.empty:
        return None
    counts = count_text(rows, {f"{column}_{key}": key for key in COUNTED}) or "nothing scored"
    return f"{column}: {NO_DATA} for {len(rows)} variant{'s' * (len(rows) != 1)} ({counts})"


def _correlation(ax: plt.Axes, row: pd.Series) -> None:
    """Spearman rho of one pair: value, CI, p and N, and the table's warning in red below them."""
    if np.isnan(row["rho"]):
        lines = [f"ρ: {NO_DATA}" if row["n"] == 0 else "ρ not computable", f"N = {row['n']}"]
    else:
        interval = "no CI" if np.isnan(row["ci_lo"]) else f"CI [{row['ci_lo']:.2f}, {row['ci_hi']:.2f}]"
        lines = [f"ρ = {row['rho']:.2f}", interval, f"p = {row['p']:.3g}", f"N = {row['n']}"]
    ax.text(0.5, 0.55, "\n".join(lines), ha="center", va="bottom", transform=ax.transAxes)
    if isinstance(row["warning"], str) and row["warning"]:
        warning = "\n".join(wrap(f"⚠ {part.strip()}", PANEL, 8) for part in row["warning"].split(";"))
        ax.text(0.5, 0.5, warning, ha="center", va="top", fontsize=8, color=ALERT, transform=ax.transAxes)
    ax.set_axis_off()


def _methods(column: pd.Series) -> str:
    """The distinct methods named in a column of the Spearman table."""
    methods = [m for m in dict.fromkeys(column.dropna()) if m]
    return ", ".join(methods) or "none (not estimable)"


def selfassessment_by_format(formats: pd.DataFrame, out: str | Path, *, note: str | None = None, ci: float = 0.95) -> None:
    """Self-assessment by format (see `selfassessment_by_format_figure`) into the PDF `out`."""
    save_pdf(selfassessment_by_format_figure(formats, note=note, ci=ci), out)


def selfassessment_by_format_figure(formats: pd.DataFrame, *, note: str | None = None, ci: float = 0.95) -> plt.Figure:
    """Self-assessment score per stage, a colour per format (mean over sizes and seeds), a panel per domain;
    solid: sampled, dashed: exact (expected value from the next-token log-probs, closed formats only).

    `formats`: the per-format table (columns domain, stage, format, score, ci_lo, ci_hi, counts and,
    where log-probs were read, score_ev, ci_ev_lo, ci_ev_hi, ev_missing); rows of other assessments are
    left out.
    """
    if "assessment" in formats:
        formats = formats[formats["assessment"] == "selfassessment"]
    domains = domains_of(formats)
    order = list(dict.fromkeys(formats["format"]))
    exact = formats.reindex(columns=["score_ev", "ev_missing"]).notna().any(axis=1)
    closed = [f for f in order if exact[formats["format"] == f].any()]  # the formats an exact value was sought for
    slots = len(order) + len(closed)
    columns = ["score", "ci_lo", "ci_hi", "score_ev", "ci_ev_lo", "ci_ev_hi"]
    fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains), 3.6), sharey=True, squeeze=False)
    drawn: set[str] = set()  # the formats and estimates drawn in some panel
    points = without_ci = 0
    for ax, domain in zip(axes[0], domains):
        rows = with_base(formats, domain)
        notes = []
        for n, fmt in enumerate(order):
            line = summarise(rows[rows["format"] == fmt], "stage", stages_of(formats), columns, [*COUNTS, *EV_MISSING])
            series = [("sampled", "score", ("ci_lo", "ci_hi"), COUNTS, fmt, n)]
            if fmt in closed:
                slot = len(order) + closed.index(fmt)
                series.append(("exact", "score_ev", ("ci_ev_lo", "ci_ev_hi"), EV_MISSING, f"{fmt} (exact)", slot))
            for kind, value, bounds, counts, label, slot in series:
                style = dict(color=f"C{n}", label=label, **ESTIMATES[kind])
                shown, bare = draw_series(ax, line, value, bounds, slot, slots, **style)
                drawn.update([kind, fmt] if shown else [])
                points, without_ci = points + shown, without_ci + bare
                notes.append(gaps(label, line, value, counts))
        category_axis(ax, stages_of(formats))
        panel_notes(ax, notes, empty=not ax.has_data())
        ax.set_title(domain)
        ax.set_xlabel("stage")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("self-assessment (0–1, 1 = misaligned)")
    estimates = {"sampled": "sampled answers", "exact": "exact: log-prob expected value"}
    legends = [
        ("format (colour)", [proxy(f, f in drawn, color=f"C{n}", marker="o") for n, f in enumerate(order)]),
        (
            "estimate (line)",
            [proxy(name, k in drawn, color="grey", **ESTIMATES[k]) for k, name in estimates.items() if k == "sampled" or closed],
        ),
    ]
    open_formats = [f for f in order if f not in closed]
    variants = span(formats.groupby(["domain", "stage", "format"]).size())
    footer = [
        f"points: mean over sizes and seeds ({variants} variants per point)"
        + (f"; no exact value for {', '.join(open_formats)} (no next-token answer to read)" if open_formats and closed else ""),
        f"error bars: {ci * 100:g}% percentile bootstrap CI over prompts within each dimension (mean of the variants' "
        f"bounds); N = {span(formats.get('prompts'))} scored prompts per format and variant; "
        + missing_ci(points, without_ci, "ci_note / ci_ev_note"),
    ]
    return finish(fig, note, footer, legends)


def mfq_profiles(foundations: pd.DataFrame, out: str | Path, *, note: str | None = None, ci: float = 0.95) -> None:
    """MFQ-2 profiles (see `mfq_profiles_figure`) into the PDF `out`."""
    save_pdf(mfq_profiles_figure(foundations, note=note, ci=ci), out)


def mfq_profiles_figure(foundations: pd.DataFrame, *, note: str | None = None, ci: float = 0.95) -> plt.Figure:
    """MFQ-2 foundation means, sampled (solid) and exact (dashed), beside the self-predicted profile
    (dotted), mean over sizes and seeds; a row of panels per domain, a panel per stage, every foundation
    on every panel in the order of the table.

    `foundations`: the per-foundation table of the morals assessment (columns domain, stage, foundation,
    measured, measured_ci_lo/hi, measured_ev, predicted, predicted_ci_lo/hi, items).
    """
    domains, stages = domains_of(foundations), stages_of(foundations)
    order = list(dict.fromkeys(foundations["foundation"]))
    columns = [c for _, value, bounds, _, _ in PROFILES for c in (value, *(bounds or ()))]
    fig, axes = plt.subplots(
        len(domains), len(stages), figsize=(3.8 * len(stages), 3.4 * len(domains)), sharey=True, squeeze=False
    )
    drawn: set[str] = set()
    points = without_ci = 0
    for row, domain in zip(axes, domains):
        rows = with_base(foundations, domain)
        for ax, stage in zip(row, stages):
            profile = summarise(rows[rows["stage"] == stage], "foundation", order, columns)
            notes = []
            for n, (label, value, bounds, style, why) in enumerate(PROFILES):
                shown, bare = draw_series(ax, profile, value, bounds, n, len(PROFILES), color=f"C{n}", label=label, **style)
                drawn.update([label] if shown else [])
                points, without_ci = points + shown, without_ci + bare
                notes.append(gaps(label, profile, value, {}, why if value in foundations else "not in the table"))
            category_axis(ax, order, rotation=45)
            panel_notes(ax, notes, empty=not ax.has_data())
            ax.set_title(f"{domain} · {stage}")
            ax.set_xlabel("foundation")
            ax.set_ylim(0.9, 5.1)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("MFQ-2 score (1–5)")
    legend = [proxy(label, label in drawn, color=f"C{n}", **style) for n, (label, _, _, style, _) in enumerate(PROFILES)]
    footer = [
        f"points: mean over sizes and seeds ({span(foundations.groupby(['domain', 'stage', 'foundation']).size())} variants "
        "per point); sampled: mean over a foundation's items of each item's mean sampled rating; exact: the same "
        "with each item's expected rating under the next-token distribution (no CI); self-predicted: the model's "
        "own prediction of its foundation scores, mean over its parsed predictions",
        f"error bars: {ci * 100:g}% percentile bootstrap CI over the items of a foundation (sampled) and over the parsed "
        f"self-predictions (self-predicted), mean of the variants' bounds; N = {span(foundations.get('items'))} items "
        f"per foundation; {missing_ci(points, without_ci, 'measured_ci_note / predicted_ci_note')}",
    ]
    return finish(fig, note, footer, [("profile", legend)])
