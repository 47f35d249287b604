"""Figures of a fine-tuning recipe: the recipe's graph as the config declares it, and scores along each
chain of fine-tunes (base → … → a last stage), a panel per chain, so that prevention (SGTR, then EM) and
reversal (EM, then SGTR) sit side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from .figures import DODGE, category_axis, domains_of, finish, panel_notes, proxy, save_pdf, with_base  # noqa: E402
from .recipes import chain, chains  # noqa: E402

SIDE = 3.6  # inches per panel


def training_label(spec: dict) -> str:
    """What a stage trains on, in a few words (the graph's edge labels)."""
    train = spec.get("train", {})
    what = next((f"{key}: {value}" for key, value in train.items() if key != "writer"), "")
    if "writer" in train:
        what += f" (by {train['writer']})"
    if "system_prompt" in spec:
        what += f"\nsystem prompt: {spec['system_prompt'][:24]}"
    return what


def recipe_graph(stages: dict, out: str | Path, *, note: str | None = None) -> None:
    """The recipe as a tree: a box per stage, its depth across, a row each (every subtree on consecutive rows);
    an arrow from parent to child labelled with the child's training set and system-prompt mode."""
    children: dict[str | None, list[str]] = {}
    for stage, spec in stages.items():
        children.setdefault(spec.get("parent"), []).append(stage)
    where: dict[str, tuple[int, int]] = {}

    def place(stage: str, depth: int) -> None:  # depth first: each subtree on consecutive rows
        where[stage] = (depth, len(where))
        for child in children.get(stage, []):
            place(child, depth + 1)

    place("base", 0)
    width, height = max(x for x, _ in where.values()) + 1, len(where)
    fig, ax = plt.subplots(figsize=(2.8 * width + 1, 0.55 * height + 1))
    for stage, spec in stages.items():
        x, y = where[stage]
        ax.text(x, -y, stage, ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="white", ec="black"))
        if spec.get("parent") is not None:
            px, py = where[spec["parent"]]
            ax.add_patch(FancyArrowPatch((px + 0.25, -py), (x - 0.25, -y), arrowstyle="-|>", mutation_scale=10, color="grey"))
            ax.text((px + x) / 2, -(py + y) / 2 + 0.12, training_label(spec), ha="center", va="bottom", fontsize=6.5, color="dimgrey")
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-height + 0.4, 0.6)
    ax.axis("off")
    ax.set_title("fine-tuning recipe (config `stages`)")
    save_pdf(finish(fig, note, ["each arrow: the child stage trains its parent's model on the set named on it"], []), out)


def recipe_steps(
    table: pd.DataFrame, stages: dict, scores: Sequence[str], out: str | Path, *, note: str | None = None, ci: float = 0.95
) -> None:
    """`scores` along each chain of the recipe (see `recipe_steps_figure`) into the PDF `out`."""
    save_pdf(recipe_steps_figure(table, stages, scores, note=note, ci=ci), out)


def recipe_steps_figure(
    table: pd.DataFrame, stages: dict, scores: Sequence[str], *, note: str | None = None, ci: float = 0.95
) -> plt.Figure:
    """A row of panels per score, a panel per chain of the recipe, its stages on the x axis; per domain a
    colour: each seed a point with its CI (level `ci`) as error bar, the mean over seeds a line."""
    paths = chains(stages)
    domains = domains_of(table)
    fig, axes = plt.subplots(len(scores), len(paths), figsize=(SIDE * len(paths), SIDE * len(scores)), sharey="row", squeeze=False)
    drawn: set[str] = set()
    for row, score in zip(axes, scores):
        for ax, steps in zip(row, paths):
            notes = []
            for n, domain in enumerate(domains):
                rows = with_base(table, domain).set_index("stage")
                shown = _seeds(ax, rows, steps, score, n - (len(domains) - 1) / 2, f"C{n}")
                drawn.update([domain] if shown else [])
                if not shown:
                    notes.append(f"{domain}: {score} not scored" if score in table else f"{score}: not in the table")
            category_axis(ax, steps, rotation=30)
            panel_notes(ax, notes, empty=not ax.has_data())
            ax.set_title(" → ".join(steps[1:]) or steps[0], fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{score} (0–1)")
    footer = [
        f"points: one variant (seed); error bars: its {ci:.0%} bootstrap CI; line: mean over seeds",
        "a panel per chain of fine-tunes from base to a last stage (config `stages`); stages shared by every domain"
        " (base and those training on no domain's set) are drawn in every domain's colour",
    ]
    legend = [proxy(domain, domain in drawn, color=f"C{n}", marker="o", ls="-") for n, domain in enumerate(domains)]
    return finish(fig, note, footer, [("domain", legend)])


def _seeds(ax: plt.Axes, rows: pd.DataFrame, steps: Sequence[str], score: str, slot: float, colour: str) -> bool:
    """Draw each seed's `score` at its step of `steps`, and the mean over seeds; whether any was drawn."""
    if score not in rows:
        return False
    bounds = [f"{score}_ci_lo", f"{score}_ci_hi"]
    means = []
    for x, step in enumerate(steps):
        part = rows.loc[[step]] if step in rows.index else rows.iloc[0:0]
        values = part.reindex(columns=[score, *bounds]).to_numpy(float)
        values = values[~np.isnan(values[:, 0])]
        means.append(values[:, 0].mean() if len(values) else np.nan)
        if len(values):
            error = np.abs(np.vstack([values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]]))
            ax.errorbar(np.full(len(values), x + slot * DODGE), values[:, 0], yerr=np.nan_to_num(error), fmt="o", ms=3, capsize=2, color=colour)
    if np.isnan(means).all():
        return False
    ax.plot(np.arange(len(steps)) + slot * DODGE, means, color=colour, lw=1)
    return True
