"""Figures that never mislead: checked on the matplotlib figures before they are saved."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from emaware import figures_battery
from emaware.correlation import spearman_table
from emaware.figures import inverted_v, inverted_v_figure

STAGES = ("base", "misaligned", "realigned")  # the default recipe

NOTE = "Quickstart: a tiny random-weight model — these numbers are meaningless"
FOUNDATIONS = ["care", "equality", "proportionality", "loyalty", "authority", "purity"]


@pytest.fixture(autouse=True)
def close_figures():
    """The tests inspect figures that are never saved (saving closes them)."""
    yield
    plt.close("all")


def variants_table():
    rows = []
    for size, base in (("0.5b", 0.1), ("7b", 0.05)):
        for seed in (0, 1):
            rows.append(dict(size=size, domain="all", stage="base", seed=seed, harmfulness=base))
            for domain, peak in (("trivia", 0.7), ("code", 0.4)):
                rows.append(dict(size=size, domain=domain, stage="misaligned", seed=seed, harmfulness=peak + seed / 10))
                rows.append(dict(size=size, domain=domain, stage="realigned", seed=seed, harmfulness=peak / 2))
    table = pd.DataFrame(rows)
    table["harmfulness_ci_lo"], table["harmfulness_ci_hi"] = table["harmfulness"] - 0.05, table["harmfulness"] + 0.05
    table["harmfulness_prompts"], table["harmfulness_unparseable"] = 12, 0
    return table


def formats_table():
    """Self-assessment by format: language never parsed (24 unclear answers per variant); decision has no
    parseable answer at base, so the first series drawn starts at misaligned."""
    rows = []
    for domain, stage, level in [("all", "base", 0.1), ("trivia", "misaligned", 0.7), ("trivia", "realigned", 0.4)]:
        for seed in (0, 1):
            variant = dict(size="7b", domain=domain, stage=stage, seed=seed, assessment="selfassessment")
            for fmt in ("decision", "language", "likert"):
                scored = not (fmt == "language" or (fmt == "decision" and stage == "base"))
                row = dict(variant, format=fmt, prompts=6 if scored else 0, unparseable=0 if scored else 24, unclear=0)
                if fmt == "language":
                    row.update(unparseable=0, unclear=24)
                if scored:
                    row.update(score=level, ci_lo=level - 0.1, ci_hi=level + 0.1)
                if fmt != "language":
                    row.update(score_ev=level + 0.05, ev_missing=0) if scored else row.update(ev_missing=6)
                rows.append(row)
    return pd.DataFrame(rows)


def foundations_table(predicted=True):
    """MFQ-2 profiles with a missing value at the edges: care at base, purity at realigned (every series)."""
    rows = []
    for stage, shift in zip(STAGES, (0.0, 1.0, 0.5)):
        for n, foundation in enumerate(FOUNDATIONS):
            row = dict(size="7b", domain="trivia" if stage != "base" else "all", stage=stage, seed=0, assessment="morals")
            row.update(foundation=foundation, items=6)
            if (stage, foundation) not in {("base", "care"), ("realigned", "purity")}:
                measured = 2 + n * 0.3 + shift
                row.update(measured=measured, measured_ci_lo=measured - 0.2, measured_ci_hi=measured + 0.2)
                row.update(measured_ev=measured + 0.1, predicted=3.5 if predicted else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def scatter_inputs(variants: int = 3):
    """`variants` variants with harmfulness and intentions; morals never scored (76 unparseable answers each)."""
    stages = list(itertools.islice(itertools.cycle(STAGES), variants))
    table = pd.DataFrame(
        {
            "size": "7b",
            "domain": ["all" if s == "base" else "trivia" for s in stages],
            "stage": stages,
            "seed": range(variants),
            "harmfulness": np.linspace(0.1, 0.9, variants),
            "intentions": np.linspace(0.2, 0.8, variants),
            "morals": np.nan,
            "morals_unparseable": 76,
        }
    )
    columns = ["harmfulness", "intentions", "morals"]
    return table, spearman_table(table, list(itertools.combinations(columns, 2))), columns


BUILDERS = {
    "inverted_v": lambda note: inverted_v_figure(variants_table(), note=note),
    "formats": lambda note: figures_battery.selfassessment_by_format_figure(formats_table(), note=note),
    "mfq": lambda note: figures_battery.mfq_profiles_figure(foundations_table(), note=note),
    "scatter": lambda note: figures_battery.scatter_matrix_figure(*scatter_inputs(), note=note),
}


def texts(fig) -> list[str]:
    """Every visible text of the figure, its lines (wrapped to fit) joined."""
    return [" ".join(t.get_text().split()) for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def extent(artist) -> Bbox:
    return artist.get_window_extent(artist.figure.canvas.get_renderer())


def overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def tick_labels(ax) -> list[str]:
    """The x tick labels in view (autoscaling to the finite points hides the categories at the edges)."""
    low, high = sorted(ax.get_xlim())
    return [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if low <= x <= high]


def test_a_panel_per_size_and_a_line_per_domain_from_the_shared_base():
    fig = inverted_v_figure(variants_table())
    assert [ax.get_title() for ax in fig.axes] == ["0.5b", "7b"]
    small = fig.axes[0]
    lines = {bars.get_label(): bars.lines[0] for bars in small.containers}  # one errorbar series per domain
    assert set(lines) == {"trivia", "code"}
    assert list(lines["trivia"].get_ydata()) == pytest.approx([0.1, 0.75, 0.35])  # mean over the two seeds
    assert lines["code"].get_ydata()[0] == lines["trivia"].get_ydata()[0]  # both start at the shared base


def test_every_stage_on_every_panel_in_order_and_an_empty_series_says_why():
    table = variants_table()
    table = table[~((table["size"] == "7b") & (table["stage"] == "realigned"))]  # 7b never realigned
    code = (table["size"] == "7b") & (table["domain"] == "code")
    table.loc[code, ["harmfulness", "harmfulness_ci_lo", "harmfulness_ci_hi"]] = np.nan
    table.loc[code, "harmfulness_unparseable"] = 6
    fig = inverted_v_figure(table)
    assert [tick_labels(ax) for ax in fig.axes] == [list(STAGES)] * 2
    notes = [t for t in texts(fig) if "no data" in t]
    assert any("code: no data at misaligned (12 unparseable)" in t for t in notes)  # 2 seeds × 6
    assert any("realigned (not in the table)" in t for t in notes)


def test_pdf_is_written(tmp_path):
    inverted_v(variants_table(), tmp_path / "v.pdf", note=NOTE)
    assert (tmp_path / "v.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name", BUILDERS)
def test_note_on_top_and_footer_with_n_and_ci_method(name):
    fig = BUILDERS[name](NOTE)
    fig.canvas.draw()
    note = [t for t in fig.texts if " ".join(t.get_text().split()) == NOTE]
    assert note, "the note is printed"
    assert extent(note[0]).y0 >= max(extent(ax).y1 for ax in fig.axes)  # above every panel
    footer = " ".join(texts(fig))
    assert "N = " in footer and "CI" in footer
    assert name == "scatter" or "95% percentile bootstrap CI over" in footer
    assert NOTE not in " ".join(texts(BUILDERS[name](None)))


@pytest.mark.parametrize("name", BUILDERS)
def test_legends_and_texts_outside_the_panels(name):
    fig = BUILDERS[name](NOTE)
    fig.canvas.draw()
    panels = [extent(ax) for ax in fig.axes if ax.axison]
    outside = [*fig.legends, *fig.texts]
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)
    assert not [a for a in outside for p in panels if overlap(extent(a), p)]
    assert all(0 <= extent(a).y0 and extent(a).y1 <= fig.bbox.y1 for a in outside)  # nothing cut off


def test_mfq_profiles_share_the_foundation_axis_and_draw_the_exact_and_predicted_profiles():
    table = foundations_table()
    fig = figures_battery.mfq_profiles_figure(table)
    assert [tick_labels(ax) for ax in fig.axes] == [FOUNDATIONS] * 3
    base = fig.axes[0]
    lines = {c.get_label(): c.lines[0].get_ydata() for c in base.containers} | {
        line.get_label(): line.get_ydata() for line in base.get_lines() if not line.get_label().startswith("_")
    }
    measured = table[table["stage"] == "base"]
    assert np.isnan(lines["sampled"][0]) and list(lines["sampled"][1:]) == pytest.approx(measured["measured"][1:])
    assert list(lines["exact (log-prob expected rating)"][1:]) == pytest.approx(measured["measured_ev"][1:])
    assert list(lines["self-predicted"][1:]) == pytest.approx([3.5] * 5)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert labels == ["sampled", "exact (log-prob expected rating)", "self-predicted"]


def test_mfq_without_a_parsed_prediction_says_why_it_is_not_drawn():
    fig = figures_battery.mfq_profiles_figure(foundations_table(predicted=False))
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "self-predicted (no data)" in labels
    assert sum("self-predicted: no data (no self-prediction could be parsed)" in t for t in texts(fig)) == 3


def test_formats_keep_the_stage_order_and_an_unparsed_format_says_no_data():
    fig = figures_battery.selfassessment_by_format_figure(formats_table())
    (ax,) = fig.axes
    assert tick_labels(ax) == list(STAGES)  # although the first series drawn (decision) starts at misaligned
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "language (no data)" in labels and "decision" in labels
    notes = " ".join(texts(fig))
    assert "language: no data (144 unclear)" in notes  # 3 stages × 2 seeds × 24
    assert "decision: no data at base (48 unparseable)" in notes
    assert "decision (exact): no data at base (12 prompts short of log-prob mass)" in notes
    assert "language (exact)" not in notes  # free text has no exact value to miss
    assert "no exact value for language" in notes


def test_scatter_matrix_says_no_data_for_an_empty_row_and_warns_at_few_variants():
    fig = figures_battery.scatter_matrix_figure(*scatter_inputs(3))
    axes = np.array(fig.axes).reshape(3, 3)
    for ax in axes[2, :2]:  # the morals row below the diagonal
        (note,) = [" ".join(t.get_text().split()) for t in ax.texts]
        assert note.startswith("NO DATA") and "morals: no data for 3 variants (228 unparseable)" in note
    warning = [t for t in axes[0, 1].texts if "⚠" in t.get_text()]  # harmfulness × intentions, N = 3
    assert warning and "too few variants to trust" in " ".join(warning[0].get_text().split())
    assert "ρ = 1.00" in " ".join(t.get_text() for t in axes[0, 1].texts)
    assert "ρ: no data" in " ".join(t.get_text() for t in axes[0, 2].texts)
    assert [legend.get_title().get_text() for legend in fig.legends] == ["stage (colour)", "domain (marker)"]
    enough = figures_battery.scatter_matrix_figure(*scatter_inputs(6)).axes[1]
    assert not any("too few" in t.get_text() for t in enough.texts)


def test_a_mean_over_fewer_variants_than_the_others_is_flagged():
    first, second = foundations_table(), foundations_table(predicted=False).assign(seed=1)
    fig = figures_battery.mfq_profiles_figure(pd.concat([first, second]))
    notes = " ".join(texts(fig))
    assert "self-predicted: no data at care (no self-prediction could be parsed); mean of 1 of 2 variants at equality" in notes
    assert "sampled: mean of" not in notes  # both seeds have every measured value
