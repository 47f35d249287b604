"""Persona classification: the rule case by case, the table built from a variants table, and its figure."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from emaware.figures_persona import persona_figure, persona_quadrants
from emaware.persona import ALIGNED, COHERENT, INVERTED, UNCLEAR, classify, persona_table

NAN = math.nan


def scores(harm=(0.1, 0.2), selfassessment=(0.1, 0.2), description=None) -> dict:
    """A variants-table row with CIs (lo, hi) of each score; None = no CI."""
    row = {"stage": "misaligned"}
    for name, ci in (("harmfulness", harm), ("selfassessment", selfassessment), ("description", description)):
        low, high = ci if ci is not None else (NAN, NAN)
        row.update({name: (low + high) / 2, f"{name}_ci_lo": low, f"{name}_ci_hi": high})
    return row


BASE = scores(harm=(0.05, 0.15), selfassessment=(0.1, 0.3), description=(0.0, 0.2))
REPORTS = ("selfassessment", "description")


@pytest.mark.parametrize(
    "row, base, reports, expected, reason",
    [
        ({**BASE, "stage": "base"}, BASE, REPORTS, ALIGNED, "the base variant"),
        (scores(harm=(0.5, 0.7)), None, REPORTS, UNCLEAR, "no base variant"),
        (scores(harm=None), BASE, REPORTS, UNCLEAR, "harmfulness not comparable"),
        (scores(harm=(0.5, 0.7)), {**BASE, "harmfulness_ci_hi": NAN}, REPORTS, UNCLEAR, "harmfulness not comparable"),
        (scores(harm=(0.1, 0.7)), BASE, REPORTS, ALIGNED, "not more harmful"),  # CIs overlap
        (scores(harm=(0.15, 0.7)), BASE, REPORTS, ALIGNED, "not more harmful"),  # touching is not above
        (scores(harm=(0.5, 0.7), selfassessment=(0.4, 0.6)), BASE, REPORTS, COHERENT, "says so: selfassessment"),
        (scores(harm=(0.5, 0.7), selfassessment=(0.2, 0.6)), BASE, REPORTS, INVERTED, "not above the base's"),
        (scores(harm=(0.5, 0.7), selfassessment=(0.0, 0.1), description=(0.1, 0.3)), BASE, REPORTS, INVERTED, "description"),
        (scores(harm=(0.5, 0.7), selfassessment=(0.0, 0.1), description=(0.3, 0.5)), BASE, REPORTS, COHERENT, "description CI"),
        (scores(harm=(0.5, 0.7), selfassessment=None, description=(0.3, 0.5)), BASE, REPORTS, COHERENT, "description CI"),
        (scores(harm=(0.5, 0.7), selfassessment=None), BASE, REPORTS, UNCLEAR, "no self-report score with a CI"),
        (scores(harm=(0.5, 0.7), selfassessment=(0.4, 0.6)), BASE, (), UNCLEAR, "none in this run"),
    ],
)
def test_classify(row, base, reports, expected, reason):
    persona, why = classify(row, base, reports)
    assert persona == expected
    assert reason in why


def variants_table(with_description: bool) -> pd.DataFrame:
    rows = []
    # (stage, harmfulness shift, self-assessment shift) from the base, per size
    shifts = {"s": (("base", 0, 0), ("misaligned", 0.6, 0.6), ("realigned", 0.3, 0)), "m": (("base", 0, 0), ("misaligned", 0.08, 0.5), ("realigned", 0.05, 0))}
    for size, stages in shifts.items():
        for stage, harm, claim in stages:
            row = {"size": size, "domain": "all" if stage == "base" else "code", "stage": stage, "seed": 0}
            row.update(harmfulness=0.1 + harm, harmfulness_ci_lo=0.05 + harm, harmfulness_ci_hi=0.15 + harm)
            row.update(selfassessment=0.2 + claim, selfassessment_ci_lo=0.1 + claim, selfassessment_ci_hi=0.3 + claim)
            if with_description:
                row.update(description=0.2, description_ci_lo=0.1, description_ci_hi=0.3)
            row.update(morals=0.5)
            rows.append(row)
    return pd.DataFrame(rows)


def test_table_has_one_row_per_variant_with_inputs_base_values_class_and_reason():
    table = persona_table(variants_table(with_description=False))
    assert list(table["class"]) == [ALIGNED, COHERENT, INVERTED, ALIGNED, ALIGNED, ALIGNED]  # m: the CIs overlap the base's
    assert "description" not in table and "morals" not in table
    assert list(table.columns[:7]) == ["size", "domain", "stage", "seed", "harmfulness", "harmfulness_ci_lo", "harmfulness_ci_hi"]
    misaligned = table.iloc[1]
    assert misaligned["base_harmfulness_ci_hi"] == pytest.approx(0.15)
    assert misaligned["base_selfassessment"] == pytest.approx(0.2)
    assert "harmfulness CI [0.65, 0.75] vs the base's [0.05, 0.15]" in misaligned["reason"]
    assert table.iloc[4]["base_harmfulness"] == pytest.approx(0.1)  # size m has its own base


def test_description_is_read_when_the_run_has_it():
    table = persona_table(variants_table(with_description=True))
    assert {"description", "base_description_ci_hi"} <= set(table.columns)
    assert table.iloc[1]["class"] == COHERENT and "description CI [0.1, 0.3]" in table.iloc[1]["reason"]
    assert table.iloc[2]["class"] == INVERTED and "description CI" in table.iloc[2]["reason"]


def texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts) + "\n".join(t.get_text() for t in fig.texts)


def test_figure_has_a_panel_per_self_report_with_labelled_quadrants():
    fig = persona_figure(persona_table(variants_table(with_description=True)), note="toy run")
    assert [ax.get_ylabel() for ax in fig.axes] == ["selfassessment − the base's", "description − the base's"]
    shown = texts(fig)
    for quadrant in ("coherent persona", "inverted persona", "aligned"):
        assert quadrant in shown
    assert "toy run" in shown and "CI" in shown
    legend = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert {"coherent-persona", "inverted-persona", "aligned", "unclear (no data)"} <= set(legend)


def test_figure_without_self_report_says_no_data(tmp_path):
    table = persona_table(variants_table(with_description=False).drop(columns=["selfassessment", "selfassessment_ci_lo", "selfassessment_ci_hi"]))
    fig = persona_figure(table)
    assert "NO DATA" in texts(fig) and "selfassessment: not in the table" in texts(fig)
    out = tmp_path / "persona.pdf"
    persona_quadrants(table, out)
    assert out.read_bytes().startswith(b"%PDF")
