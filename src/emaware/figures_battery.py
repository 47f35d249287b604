"""Figures of the assessment battery: scores against each other over variants (Spearman rho annotated),
self-assessment by format, and MFQ-2 profiles per stage beside the self-predicted profile."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .config import BASE_DOMAIN, STAGES  # noqa: E402
from .figures import save_pdf  # noqa: E402

MARKERS = "osD^v<>P*X"


def _domains(table: pd.DataFrame) -> list[str]:
    return [d for d in dict.fromkeys(table["domain"]) if d != BASE_DOMAIN] or [BASE_DOMAIN]


def _with_base(table: pd.DataFrame, domain: str) -> pd.DataFrame:
    """A domain's rows plus the base variants, which every domain shares."""
    return table[(table["domain"] == domain) | (table["domain"] == BASE_DOMAIN)]


def scatter_matrix(table: pd.DataFrame, correlations: pd.DataFrame, columns: Sequence[str], out: str | Path) -> None:
    """Every pair of score columns over the variants of the variants table: scatter below the diagonal
    (colour = stage, marker = domain), Spearman rho with its p value and warning above it, read from the
    Spearman table (`overall` group) so the figure and results/stats/spearman.tsv never disagree."""
    k = len(columns)
    rho = correlations[correlations["group"] == "overall"].set_index(["x", "y"])
    domains = list(dict.fromkeys(table["domain"]))
    colours = dict(zip(STAGES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(k, k, figsize=(2.4 * k, 2.4 * k), squeeze=False)
    for i, y in enumerate(columns):
        for j, x in enumerate(columns):
            ax = axes[i][j]
            if i == j:
                ax.text(0.5, 0.5, x, ha="center", va="center", fontsize="large", transform=ax.transAxes)
                ax.set_axis_off()
            elif i > j:
                for (stage, domain), part in table.groupby(["stage", "domain"], sort=False):
                    ax.scatter(
                        part[x], part[y], color=colours.get(stage), marker=MARKERS[domains.index(domain) % len(MARKERS)], s=22
                    )
                ax.set_xlim(-0.05, 1.05)
                ax.set_ylim(-0.05, 1.05)
                ax.grid(alpha=0.3)
            else:
                r = rho.loc[(y, x)]  # above the diagonal y precedes x in `columns`
                warning = r["warning"] if isinstance(r["warning"], str) else ""
                ax.text(
                    0.5,
                    0.5,
                    f"ρ = {r['rho']:.2f}\np = {r['p']:.3g}\nN = {r['n']}" + ("\n⚠ " + warning.split(";")[0] if warning else ""),
                    wrap=True,
                    fontsize="small" if warning else None,
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
                ax.set_axis_off()
            if i == k - 1 and j < i:
                ax.set_xlabel(x)
            if j == 0 and i > j:
                ax.set_ylabel(y)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=s) for s, c in colours.items()]
    handles += [plt.Line2D([], [], color="grey", marker=MARKERS[n % len(MARKERS)], ls="", label=d) for n, d in enumerate(domains)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small")
    save_pdf(fig, out, bottom=0.25 / k)


def selfassessment_by_format(formats: pd.DataFrame, out: str | Path) -> None:
    """Self-assessment score per stage, a line per format (mean over sizes and seeds), a panel per domain.

    `formats`: the per-format table (columns domain, stage, format, score and, where logprobs were read,
    score_ev, drawn dashed); rows of other assessments are left out.
    """
    if "assessment" in formats:
        formats = formats[formats["assessment"] == "selfassessment"]
    domains = _domains(formats)
    fig, axes = plt.subplots(1, len(domains), figsize=(4 * len(domains), 3.4), sharey=True, squeeze=False)
    for ax, domain in zip(axes[0], domains):
        rows = _with_base(formats, domain)
        for n, (fmt, part) in enumerate(rows.groupby("format", sort=False)):
            colour = f"C{n}"
            means = part.groupby("stage")["score"].mean().reindex(STAGES).dropna()
            ax.plot(means.index, means.values, marker="o", color=colour, label=fmt)
            if "score_ev" in part and part["score_ev"].notna().any():
                exact = part.groupby("stage")["score_ev"].mean().reindex(STAGES).dropna()
                ax.plot(exact.index, exact.values, ls="--", marker="x", color=colour, label=f"{fmt} (exact)")
        ax.set_title(domain)
        ax.set_xlabel("stage")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("self-assessment (0–1, 1 = misaligned)")
    axes[0][-1].legend(fontsize="small")
    save_pdf(fig, out)


def mfq_profiles(foundations: pd.DataFrame, out: str | Path) -> None:
    """MFQ-2 foundation means (solid) beside the self-predicted profile (dashed), mean over sizes and
    seeds; a row of panels per domain, a panel per stage.

    `foundations`: the per-foundation table of the morals assessment (columns domain, stage, foundation,
    measured, predicted).
    """
    domains = _domains(foundations)
    order = list(dict.fromkeys(foundations["foundation"]))
    fig, axes = plt.subplots(
        len(domains), len(STAGES), figsize=(3.8 * len(STAGES), 3.2 * len(domains)), sharey=True, squeeze=False
    )
    for row, domain in zip(axes, domains):
        rows = _with_base(foundations, domain)
        for ax, stage in zip(row, STAGES):
            part = rows[rows["stage"] == stage].groupby("foundation")[["measured", "predicted"]].mean().reindex(order)
            ax.plot(order, part["measured"], marker="o", label="measured")
            ax.plot(order, part["predicted"], marker="s", ls="--", label="self-predicted")
            ax.set_title(f"{domain} · {stage}")
            ax.set_ylim(0.9, 5.1)
            ax.tick_params(axis="x", rotation=45)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("MFQ-2 score (1–5)")
    axes[0][-1].legend(fontsize="small")
    save_pdf(fig, out)
