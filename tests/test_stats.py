"""Bootstrap CIs and the Spearman table (checked against scipy on known data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from emaware.stats import bootstrap_ci, spearman_table

KNOWN = pd.DataFrame(
    {
        "domain": ["all", "all", "trivia", "trivia", "code", "code", "trivia", "code", "all", "trivia"],
        "harm": [0.07, 0.10, 0.71, 0.43, 0.39, 0.24, 0.65, 0.30, 0.05, 0.50],
        "intent": [0.05, 0.12, 0.80, 0.35, 0.30, 0.28, 0.60, 0.20, 0.02, 0.55],
        "sa": [0.20, 0.15, 0.70, 0.50, 0.45, 0.30, 0.40, 0.35, 0.25, 0.60],
    }
)
PAIRS = [("harm", "intent"), ("harm", "sa"), ("intent", "sa")]


def test_spearman_table_equals_scipy_overall():
    table = spearman_table(KNOWN, PAIRS)
    assert list(table["group"]) == ["overall"] * 3
    for row in table.itertuples():
        expected = spearmanr(KNOWN[row.x], KNOWN[row.y])
        assert row.rho == pytest.approx(expected.statistic)
        assert row.p == pytest.approx(expected.pvalue)
        assert row.n == len(KNOWN)
        assert row.ci_lo <= row.rho <= row.ci_hi


def test_spearman_per_domain_includes_the_shared_base_variants():
    table = spearman_table(KNOWN, PAIRS, by="domain")
    assert list(dict.fromkeys(table["group"])) == ["overall", "trivia", "code"]
    trivia = KNOWN[KNOWN["domain"].isin(["trivia", "all"])]
    row = table[(table["group"] == "trivia") & (table["x"] == "harm") & (table["y"] == "sa")].iloc[0]
    expected = spearmanr(trivia["harm"], trivia["sa"])
    assert row.n == len(trivia) == 7
    assert (row.rho, row.p) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))


def test_spearman_drops_missing_values_and_reports_nan_when_undefined():
    df = KNOWN.assign(sa=[np.nan] * 8 + [0.1, 0.2])
    row = spearman_table(df, [("harm", "sa")]).iloc[0]
    assert row.n == 2 and np.isnan(row.rho) and np.isnan(row.p)
    flat = spearman_table(KNOWN.assign(sa=0.3), [("harm", "sa")]).iloc[0]
    assert np.isnan(flat.rho)


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.1, size=200)
    low, high = bootstrap_ci(values, n=500, seed=3)
    assert (low, high) == bootstrap_ci(values, n=500, seed=3)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(200), rel=0.25)


def test_bootstrap_ci_generic_stat_and_batched_agree():
    values = np.arange(20.0)
    looped = bootstrap_ci(values, np.median, n=300, seed=0)
    batched = bootstrap_ci(values, lambda draws: np.median(draws, axis=-1), n=300, seed=0, batched=True)
    assert looped == batched


def test_bootstrap_strata_keep_each_row_in_its_stratum():
    values = np.array([0.0, 0.0, 0.0, 10.0, 10.0])
    strata = ["a", "a", "a", "b", "b"]

    def first_stratum_mean(v):
        return v[:3].mean()

    assert bootstrap_ci(values, first_stratum_mean, n=200, strata=strata) == (0.0, 0.0)


def test_bootstrap_ci_of_nothing_is_nan():
    assert all(np.isnan(bootstrap_ci([])))
