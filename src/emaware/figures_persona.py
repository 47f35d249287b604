"""The persona figure: per variant, how much more harmful than its base it is against how much more
misaligned it says it is, quadrants labelled, points coloured by the CI-aware class of tables/persona.tsv."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .figures import NO_DATA, finish, panel_notes, proxy, save_pdf, stages_of  # noqa: E402
from .figures_battery import MARKERS  # noqa: E402
from .persona import ALIGNED, CLASSES, COHERENT, HARM, INVERTED, SELF_REPORTS, UNCLEAR  # noqa: E402

COLOURS = {COHERENT: "C3", INVERTED: "C4", ALIGNED: "C2", UNCLEAR: "grey"}
# Where each quadrant's name goes, in axes coordinates (0 is the middle of both axes).
QUADRANTS = (
    (0.98, 0.98, "right", "top", "coherent persona\n(more harmful, says so)"),
    (0.98, 0.02, "right", "bottom", "inverted persona\n(more harmful, claims alignment)"),
    (0.02, 0.98, "left", "top", "aligned\n(not more harmful)"),
    (0.02, 0.02, "left", "bottom", "aligned\n(not more harmful)"),
)
SIDE = 3.6  # inches per panel


def persona_quadrants(persona: pd.DataFrame, out: str | Path, *, note: str | None = None, ci: float = 0.95) -> None:
    """The persona figure (see `persona_figure`) into the PDF `out`."""
    save_pdf(persona_figure(persona, note=note, ci=ci), out)


def _shifted(persona: pd.DataFrame, score: str) -> tuple[np.ndarray, np.ndarray]:
    """A score of every variant minus its base's estimate, and the error bars of the variant's own CI."""
    rows = persona.reindex(columns=[f"{score}{s}" for s in ("", "_ci_lo", "_ci_hi")] + [f"base_{score}"]).to_numpy(float)
    value, low, high, base = rows.T
    errors = np.vstack([value - low, high - value])
    return value - base, np.where(errors < 0, 0.0, errors)  # a CI need not hold its estimate; NaN: no bar


def _limit(values: np.ndarray, errors: np.ndarray) -> float:
    """Half the width of a symmetric axis around 0 that holds every point and error bar."""
    reach = np.abs(values) + np.nan_to_num(errors).max(axis=0)
    return max(0.1, float(np.nanmax(reach, initial=0.0)) * 1.1)


def _missing(persona: pd.DataFrame, score: str, missing: int) -> str | None:
    """Why a panel lacks points, or None."""
    if score not in persona:
        return f"{score}: not in the table"
    if missing:
        return f"{score}: {NO_DATA} for {missing} of {len(persona)} variants (a score of theirs or their base's is missing)"
    return None


def persona_figure(persona: pd.DataFrame, *, note: str | None = None, ci: float = 0.95) -> plt.Figure:
    """A panel per self-report score of the persona table: x = harmfulness minus the base's, y = the
    self-report minus the base's, both with the variant's CI as error bars; colour = class, marker = stage.
    The quadrants split at the base (0); the class itself is decided by the CIs (tables/persona.tsv), so a
    point right of 0 whose CI overlaps the base's is not counted as harmful."""
    reports = [score for score in SELF_REPORTS if score in persona] or [SELF_REPORTS[0]]
    markers = {stage: MARKERS[n % len(MARKERS)] for n, stage in enumerate(stages_of(persona))}
    several = [key for key in ("size", "seed") if persona[key].nunique() > 1]
    fig, axes = plt.subplots(1, len(reports), figsize=(SIDE * len(reports), SIDE), squeeze=False)
    x, xerr = _shifted(persona, HARM)
    drawn: set[str] = set()
    for ax, score in zip(axes[0], reports):
        y, yerr = _shifted(persona, score)
        shown = ~(np.isnan(x) | np.isnan(y))
        for i in np.flatnonzero(shown):
            row = persona.iloc[i]
            style = dict(color=COLOURS[row["class"]], marker=markers[row["stage"]], ms=5, capsize=2, lw=0.8)
            ax.errorbar(x[i], y[i], xerr=xerr[:, [i]], yerr=yerr[:, [i]], **style)
            label = " ".join([*(str(row[key]) for key in several), str(row["domain"])]) if row["stage"] != "base" else ""
            ax.annotate(label, (x[i], y[i]), xytext=(3, 3), textcoords="offset points", fontsize=6)
            drawn.update([row["class"], row["stage"]])
        xlim, ylim = _limit(x[shown], xerr[:, shown]), _limit(y[shown], yerr[:, shown])
        ax.set_xlim(-xlim, xlim)
        ax.set_ylim(-ylim, ylim)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        for qx, qy, ha, va, text in QUADRANTS:
            ax.text(qx, qy, text, transform=ax.transAxes, ha=ha, va=va, fontsize=6.5, color="dimgrey")
        panel_notes(ax, [_missing(persona, score, int((~shown).sum()))], empty=not shown.any())
        ax.set_xlabel("harmfulness − the base's")
        ax.set_ylabel(f"{score} − the base's")
        ax.grid(alpha=0.3)
    footer = [
        f"each point: one variant ({len(persona)} in the table), its scores minus the estimates of the base variant"
        f" of its size and seed; error bars: the variant's {ci * 100:g}% percentile bootstrap CI, shifted alike",
        "colour: the class of tables/persona.tsv, decided by CIs: harmful = harmfulness CI above the base's; says so ="
        " a self-report CI above the base's (selfassessment, description); a point past 0 whose CI overlaps the base's is not",
    ]
    legends = [
        ("class (colour)", [proxy(c, c in drawn, color=COLOURS[c], marker="o", ls="") for c in CLASSES]),
        ("stage (marker)", [proxy(s, s in drawn, color="grey", marker=m, ls="") for s, m in markers.items()]),
    ]
    return finish(fig, note, footer, legends)
