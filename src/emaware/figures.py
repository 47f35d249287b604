"""The inverted V: harmfulness across base → misaligned → realigned, a line per domain, a panel per size."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .config import BASE_DOMAIN, STAGES  # noqa: E402
from .io import atomic_write  # noqa: E402


def inverted_v(table: pd.DataFrame, out: str | Path, score: str = "harmfulness") -> None:
    """Plot `score` per stage from the variants table into the PDF `out`."""
    save_pdf(inverted_v_figure(table, score), out)


def save_pdf(fig: plt.Figure, out: str | Path, bottom: float = 0.0) -> None:
    """Lay out `fig` (keeping `bottom` of the height free for a legend), write it atomically, close it."""
    fig.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, format="pdf")
    plt.close(fig)


def inverted_v_figure(table: pd.DataFrame, score: str = "harmfulness") -> plt.Figure:
    """A panel per size, a line per domain over the stages (mean over seeds; error bars = mean CI bounds).

    The base variant is shared by every domain, so each domain's line starts at the same point.
    """
    sizes = list(dict.fromkeys(table["size"]))
    domains = [d for d in dict.fromkeys(table["domain"]) if d != BASE_DOMAIN]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 3.4), sharey=True, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        rows = table[table["size"] == size]
        base = rows[rows["stage"] == "base"]
        for domain in domains:
            line = pd.concat([base, rows[rows["domain"] == domain]])
            means = line.groupby("stage")[[score, f"{score}_ci_lo", f"{score}_ci_hi"]].mean().reindex(STAGES)
            means = means.dropna(subset=[score])
            err = [means[score] - means[f"{score}_ci_lo"], means[f"{score}_ci_hi"] - means[score]]
            ax.errorbar(means.index, means[score], yerr=err, marker="o", capsize=3, label=domain)
        ax.set_title(str(size))
        ax.set_xlabel("stage")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{score} (0–1)")
    axes[0][-1].legend(title="domain", fontsize="small")
    return fig
