"""Score files → variants table and breakdown tables; the battery's figures are written."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest

from emaware import figures_battery
from emaware.io import write_json
from emaware.correlation import spearman_table
from emaware.tables import breakdown_names, breakdown_table, flatten, read_records, variants_table, write_tsv

BASE = {"size": "7b", "domain": "all", "stage": "base", "seed": 0}
MIS = {"size": "7b", "domain": "trivia", "stage": "misaligned", "seed": 0}
INTENTIONS = {
    "assessment": "intentions",
    "score": 0.2,
    "ci": [0.1, 0.3],
    "n": 10,
    "prompts": 5,
    "unparseable": 1,
    "refusals": 2,
    "unclear": 3,
    "by_dimension": [
        {
            "dimension": "good-evil",
            "score": 0.1,
            "ci": [0.0, 0.2],
            "n": 5,
            "unparseable": 0,
            "refusals": 1,
            "unclear": 1,
        }
    ],
}
HARM = {
    "assessment": "harmfulness",
    "score": 0.4,
    "ci": [0.3, 0.5],
    "n": 12,
    "unparseable": 0,
    "refusals": None,
    "by_category": {"insults": 0.5},
}
SELF = {
    "assessment": "selfassessment",
    "score": 0.6,
    "ci": [0.5, 0.7],
    "score_ev": 0.55,
    "ci_ev": [0.45, 0.65],
    "n": 8,
    "unparseable": 0,
    "refusals": 0,
    "unclear": 0,
    "by_format": [{"format": "likert", "score": 0.6, "ci": [0.5, 0.7], "score_ev": None, "ci_ev": [None, None]}],
}


def test_flatten_splits_ci_pairs_and_drops_nested_data():
    assert flatten({"score": 1.0, "ci": [0, 2], "measured_ci": [1, 3], "by_x": [], "meta": {"a": 1}, "name": "x"}) == {
        "score": 1.0,
        "ci_lo": 0,
        "ci_hi": 2,
        "measured_ci_lo": 1,
        "measured_ci_hi": 3,
        "name": "x",
    }


def test_variants_table_has_one_row_per_variant_with_every_score_and_ci(tmp_path):
    entries = []
    for n, (variant, result) in enumerate([(BASE, INTENTIONS), (BASE, HARM), (MIS, INTENTIONS), (MIS, SELF)]):
        write_json(tmp_path / f"{n}.json", result)
        entries.append((variant, result["assessment"], tmp_path / f"{n}.json"))
    records = read_records(entries)
    table = variants_table(records)
    assert len(table) == 2
    assert list(table.columns[:11]) == [
        "size",
        "domain",
        "stage",
        "seed",
        "intentions",
        "intentions_ci_lo",
        "intentions_ci_hi",
        "intentions_n",
        "intentions_unparseable",
        "intentions_refusals",
        "intentions_unclear",
    ]
    base = table.iloc[0]
    assert (base["intentions"], base["harmfulness"], base["harmfulness_ci_hi"]) == (0.2, 0.4, 0.5)
    assert math.isnan(base["selfassessment"])
    assert table.iloc[1]["selfassessment_ci_ev_lo"] == 0.45
    write_tsv(table, tmp_path / "variants.tsv")
    assert pd.read_csv(tmp_path / "variants.tsv", sep="\t").shape == table.shape


def test_breakdown_tables_from_row_lists_and_level_maps():
    records = [(BASE, "intentions", INTENTIONS), (BASE, "harmfulness", HARM), (MIS, "selfassessment", SELF)]
    assert breakdown_names(records) == ["dimension", "category", "format"]
    dims = breakdown_table(records, "dimension")
    assert list(dims.columns[:6]) == ["size", "domain", "stage", "seed", "assessment", "dimension"]
    assert dims.iloc[0]["ci_hi"] == 0.2 and dims.iloc[0]["refusals"] == 1
    category = breakdown_table(records, "category").iloc[0]
    assert (category["category"], category["score"]) == ("insults", 0.5)
    assert breakdown_table(records, "foundation").empty


@pytest.fixture
def battery_tables():
    rows, formats, foundations = [], [], []
    for size in ("0.5b", "7b"):
        for domain, stage, level in [
            ("all", "base", 0.1),
            ("trivia", "misaligned", 0.7),
            ("trivia", "realigned", 0.4),
            ("code", "misaligned", 0.5),
        ]:
            variant = {"size": size, "domain": domain, "stage": stage, "seed": 0}
            rows.append(
                {**variant, "harmfulness": level, "intentions": level * 0.9, "selfassessment": level * 0.8 + 0.1}
            )
            formats += [
                {**variant, "assessment": "selfassessment", "format": f, "score": level, "score_ev": level + 0.05}
                for f in ("decision", "likert")
            ]
            foundations += [
                {**variant, "assessment": "morals", "foundation": f, "measured": 3 + level, "predicted": 3.5}
                for f in ("care", "purity")
            ]
    return pd.DataFrame(rows), pd.DataFrame(formats), pd.DataFrame(foundations)


def test_battery_figures_are_written(tmp_path, battery_tables):
    variants, formats, foundations = battery_tables
    columns = ["harmfulness", "intentions", "selfassessment"]
    correlations = spearman_table(variants, list(itertools.combinations(columns, 2)))
    options = dict(note="Quickstart: these numbers are meaningless", ci=0.9)
    figures_battery.scatter_matrix(variants, correlations, columns, tmp_path / "scatter.pdf", **options)
    figures_battery.selfassessment_by_format(formats, tmp_path / "formats.pdf", **options)
    figures_battery.mfq_profiles(foundations, tmp_path / "mfq.pdf", **options)
    for name in ("scatter", "formats", "mfq"):
        assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF")


def test_a_ci_note_is_a_value_column_not_a_breakdown_level():
    result = {"by_format": [{"format": "likert", "score": 0.5, "ci": [None, None], "ci_note": "one prompt"}]}
    table = breakdown_table([(BASE, "selfassessment", result)], "format")
    assert list(table.columns) == ["size", "domain", "stage", "seed", "assessment", "format", "score", "ci_lo", "ci_hi", "ci_note"]
