"""The inverted V (harmfulness across base → misaligned → realigned, a line per domain, a panel per size)
and what every figure shares so that none misleads: fixed category axes, legends below the axes, an
explicit "no data" with its counts where a series or panel is empty, N and the CI method in a footer,
and an optional note on top."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from .assessments.common import COUNTED  # noqa: E402
from .config import BASE_DOMAIN  # noqa: E402
from .io import atomic_write  # noqa: E402

NO_DATA = "no data"
ALERT = "firebrick"  # the note, warnings and "no data"
PAD = 0.1  # inches between the note, the axes, each legend and the footer
DODGE = 0.08  # x offset between the series of a panel, so that their error bars do not hide each other
MIN_WIDTH = 5.5  # inches: room for the note, the legends and the footer beside a single panel
CHAR_EM = 0.62  # average character width of the default font, in ems (for wrapping text to a width)
# What each score's bootstrap resamples (the assessments' score functions).
CI_UNITS = {
    "harmfulness": "prompts",
    "intentions": "queries within each dimension",
    "selfassessment": "prompts within each (dimension, format) cell",
    "morals": "items within each foundation, jointly with the self-predictions",
}


def inverted_v(
    table: pd.DataFrame, out: str | Path, score: str = "harmfulness", *, note: str | None = None, ci: float = 0.95
) -> None:
    """Plot `score` per stage from the variants table into the PDF `out`; `ci`: the level of its CIs."""
    save_pdf(inverted_v_figure(table, score, note=note, ci=ci), out)


def inverted_v_figure(
    table: pd.DataFrame, score: str = "harmfulness", *, note: str | None = None, ci: float = 0.95
) -> plt.Figure:
    """A panel per size, a line per domain over the stages (mean over seeds; error bars = mean CI bounds).

    The base variant is shared by every domain, so each domain's line starts at the same value (the series
    of a panel are drawn a little apart, so that their error bars stay visible).
    """
    sizes = list(dict.fromkeys(table["size"]))
    domains = domains_of(table)
    stages = stages_of(table)
    bounds = (f"{score}_ci_lo", f"{score}_ci_hi")
    counts = {f"{score}_{key}": key for key in COUNTED}
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 3.4), sharey=True, squeeze=False)
    drawn: set[str] = set()
    points = without_ci = 0
    for ax, size in zip(axes[0], sizes):
        rows = table[table["size"] == size]
        notes = []
        for n, domain in enumerate(domains):
            line = summarise(with_base(rows, domain), "stage", stages, [score, *bounds], counts)
            shown, bare = draw_series(ax, line, score, bounds, n, len(domains), color=f"C{n}", marker="o", label=domain)
            drawn.update([domain] if shown else [])
            points, without_ci = points + shown, without_ci + bare
            notes.append(gaps(domain, line, score, counts))
        category_axis(ax, stages)
        panel_notes(ax, notes, empty=not ax.has_data())
        ax.set_title(str(size))
        ax.set_xlabel("stage")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{score} (0–1)")
    seeds = table.groupby(["size", "domain", "stage"]).size()
    footer = [
        f"points: mean over seeds ({span(seeds)} per point); error bars: {ci * 100:g}% percentile bootstrap CI "
        f"over {CI_UNITS[score]} (mean of the seeds' bounds)",
        f"N = {span(table.get(f'{score}_prompts'))} prompts per variant; {missing_ci(points, without_ci, f'{score}_ci_note')}",
    ]
    legend = [proxy(d, d in drawn, color=f"C{n}", marker="o") for n, d in enumerate(domains)]
    return finish(fig, note, footer, [("domain", legend)])


def save_pdf(fig: plt.Figure, out: str | Path) -> None:
    """Write `fig` (laid out by `finish`) atomically as a PDF and close it."""
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, format="pdf")
    plt.close(fig)


def stages_of(table: pd.DataFrame) -> list[str]:
    """The stages of a table in its row order, which is the recipe's (base first; emaware.recipes.variants)."""
    return list(dict.fromkeys(table["stage"]))


def domains_of(table: pd.DataFrame) -> list[str]:
    """The fine-tuning domains (order of first appearance); the base domain alone when there is none."""
    return [d for d in dict.fromkeys(table["domain"]) if d != BASE_DOMAIN] or [BASE_DOMAIN]


def with_base(table: pd.DataFrame, domain: str) -> pd.DataFrame:
    """A domain's rows plus the base variants, which every domain shares."""
    return table[(table["domain"] == domain) | (table["domain"] == BASE_DOMAIN)]


def summarise(
    rows: pd.DataFrame, by: str, order: Sequence[str], columns: Sequence[str], counts: Iterable[str] = ()
) -> pd.DataFrame:
    """Per level of `by` in `order` (a row of NaN where the table has none): the mean of `columns` over the
    rows (sizes, seeds) and, as `<column> scored`, how many rows have a value; the sum of the `counts`
    columns; `variants`, the number of rows. A column the table lacks reads as NaN."""
    columns, counts = list(columns), list(counts)
    grouped = rows.reindex(columns=list(dict.fromkeys([by, *columns, *counts]))).groupby(by)
    parts = [
        grouped[columns].mean(),
        grouped[columns].count().add_suffix(" scored"),
        grouped[counts].sum(),
        grouped.size().rename("variants"),
    ]
    return pd.concat(parts, axis=1).reindex(order)


def category_axis(ax: plt.Axes, categories: Sequence[str], rotation: float = 0) -> None:
    """Every category on the x axis in this order, whether or not the panel has a value for it (series are
    drawn at the categories' indices, so no missing value can drop or reorder a category)."""
    ax.set_xticks(range(len(categories)), [str(c) for c in categories], rotation=rotation, ha="right" if rotation else "center")
    ax.set_xlim(-0.5, len(categories) - 0.5)


def draw_series(
    ax: plt.Axes,
    summary: pd.DataFrame,
    value: str,
    bounds: tuple[str, str] | None = None,
    slot: int = 0,
    slots: int = 1,
    **style,
) -> tuple[int, int]:
    """Draw `value` per category of `summary` at the category's index, shifted by its `slot` of `slots`,
    with error bars from the `bounds` columns; return (points drawn, points drawn without a CI)."""
    y = summary[value].to_numpy(float)
    shown = ~np.isnan(y)
    if not shown.any():
        return 0, 0
    x = np.arange(len(y)) + (slot - (slots - 1) / 2) * DODGE
    if bounds is None:
        ax.plot(x, y, **style)
        return int(shown.sum()), 0
    low, high = (summary[b].to_numpy(float) for b in bounds)
    error = np.vstack([y - low, high - y])
    ax.errorbar(x, y, yerr=error, capsize=3, **style)
    return int(shown.sum()), int((shown & np.isnan(error).any(axis=0)).sum())


def count_text(rows: pd.DataFrame, counts: Mapping[str, str]) -> str:
    """The non-zero sums of the `counts` columns {column: name} of `rows`: "72 unparseable, 3 refusals"."""
    sums = {name: rows[column].sum() for column, name in counts.items() if column in rows}
    return ", ".join(f"{int(n)} {name}" for name, n in sums.items() if n > 0)


def gaps(label: str, summary: pd.DataFrame, value: str, counts: Mapping[str, str], why: str = "nothing scored") -> str | None:
    """What the series `value` of `summary` lacks, as "<label>: no data at <categories> (<counts>, or `why`
    when no count explains it)", "no data at <categories> (not in the table)" where no row exists, and "mean
    of k of n variants at <categories>" where fewer variants have a value than exist; None if nothing lacks."""
    variants, scored, empty = summary["variants"].fillna(0), summary[f"{value} scored"], summary[value].isna()

    def where(rows: pd.Series) -> str:
        return "" if rows.all() else " at " + ", ".join(map(str, summary.index[rows]))

    parts = []
    if (rows := empty & (variants > 0)).any():
        parts.append(f"{NO_DATA}{where(rows)} ({count_text(summary[rows], counts) or why})")
    if (rows := empty & (variants == 0)).any():
        parts.append(f"{NO_DATA}{where(rows)} (not in the table)")
    if (rows := ~empty & (scored < variants)).any():
        parts.append(f"mean of {span(scored[rows])} of {span(variants[rows])} variants{where(rows)}")
    return f"{label}: " + "; ".join(parts) if parts else None


def panel_notes(ax: plt.Axes, notes: Iterable[str | None], empty: bool) -> None:
    """Say what a panel lacks: "no data" and the reasons across an empty panel, else each missing series
    below the panel, out of the data's way."""
    notes = [n for n in notes if n]
    width = ax.get_position().width * ax.figure.get_figwidth()
    if empty:
        text = "\n".join([NO_DATA.upper(), *(wrap(n, width, 8) for n in notes)])
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color=ALERT)
    elif notes:
        text = "\n".join(wrap(n, width, 7) for n in notes)
        below = dict(xytext=(0, -4), textcoords="offset points", ha="center", va="top")
        ax.annotate(text, xy=(0.5, 0), xycoords=ax.xaxis.label, fontsize=7, color=ALERT, **below)


def wrap(text: str, inches: float, points: float) -> str:
    """`text` broken into lines that fit `inches` at a font size of `points`."""
    chars = max(12, int(inches * 72 / (points * CHAR_EM)))
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.splitlines())


def span(values: Iterable[float] | None) -> str:
    """The range of integer counts, as "12" or "10–12"; "unknown" when there are none."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return "unknown"
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}–{high}"


def missing_ci(points: int, without: int, note_column: str) -> str:
    """How many of the drawn points lack an error bar, and where the reason is."""
    if not without:
        return "every point has its CI"
    return f"{without} of {points} points without an error bar: CI not estimable (why: {note_column} in the table)"


def proxy(label: str, drawn: bool, **style) -> Line2D:
    """A legend entry; marked "(no data)" when the series is not drawn anywhere."""
    return Line2D([], [], label=label if drawn else f"{label} ({NO_DATA})", **style)


def finish(
    fig: plt.Figure, note: str | None, footer: Sequence[str], legends: Sequence[tuple[str, Sequence[Line2D]]]
) -> plt.Figure:
    """Lay `fig` out: `note` on top; the axes; below them each legend (title, entries), stacked; the
    footer at the bottom. The figure grows by their height and by what notes below the panels take, so
    the panels keep the height they were made with and no legend covers data."""
    fig.set_figwidth(max(fig.get_figwidth(), MIN_WIDTH))
    width, height = fig.get_size_inches()
    panel = _panel_height(fig)
    renderer = fig.canvas.get_renderer()
    top = []
    if note:
        top.append(fig.text(0.5, 1, wrap(note, width, 13), ha="center", va="top", fontsize=12, fontweight="bold", color=ALERT))
    bottom = [_legend(fig, renderer, title, entries) for title, entries in legends if entries]
    bottom.append(fig.text(0.5, 0, wrap("\n".join(footer), width, 7.5), ha="center", va="top", fontsize=7.5, color="dimgrey"))
    top_height = sum(a.get_window_extent(renderer).height / fig.dpi + PAD for a in top)
    heights = [a.get_window_extent(renderer).height / fig.dpi + PAD for a in bottom]
    rows = fig.axes[0].get_subplotspec().get_gridspec().nrows
    for _ in range(2):  # the second pass gives the panels back the height that the first one's layout took
        total = height + top_height + sum(heights) + PAD
        fig.set_figheight(total)
        for artist in top:
            artist.set_y(1 - PAD / total)
        y = sum(heights)  # inches from the bottom to the top of the next artist below the axes
        for artist, h in zip(bottom, heights):
            if isinstance(artist, Text):
                artist.set_y(y / total)
            else:
                artist.set_bbox_to_anchor((0.5, y / total), transform=fig.transFigure)
            y -= h
        fig.tight_layout(rect=(0, (sum(heights) + PAD) / total, 1, 1 - top_height / total))
        height += max(0.0, panel - _panel_height(fig)) * rows
    return fig


def _panel_height(fig: plt.Figure) -> float:
    """The height of the smallest panel, in inches."""
    return min(ax.get_position().height for ax in fig.axes) * fig.get_figheight()


def _legend(fig: plt.Figure, renderer, title: str, entries: Sequence[Line2D]) -> Legend:
    """A figure legend in as few rows as fit the figure's width."""
    for columns in range(len(entries), 0, -1):
        legend = fig.legend(
            handles=list(entries), title=title, loc="upper center", ncols=columns, fontsize="small", title_fontsize="small"
        )
        if columns == 1 or legend.get_window_extent(renderer).width <= 0.95 * fig.bbox.width:
            return legend
        legend.remove()
