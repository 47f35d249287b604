"""Bootstrap CIs, the Spearman table (checked against scipy on known data), and the CIs the assessments report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, permutation_test, spearmanr

from emaware import steps
from emaware.assessments import harmfulness, intentions, selfassessment
from emaware.correlation import BONETT_WRIGHT_CI, EXACT_MAX_N, EXACT_P, MONTE_CARLO_P, spearman_table
from emaware.stats import bootstrap_ci

ROOT = Path(__file__).resolve().parents[1]
KNOWN = pd.DataFrame(
    {
        "domain": ["all", "all", "trivia", "trivia", "code", "code", "trivia", "code", "all"],
        "harm": [0.07, 0.10, 0.71, 0.43, 0.39, 0.24, 0.65, 0.30, 0.05],
        "intent": [0.05, 0.12, 0.80, 0.35, 0.30, 0.28, 0.60, 0.20, 0.02],
        "sa": [0.20, 0.15, 0.70, 0.50, 0.45, 0.30, 0.40, 0.35, 0.25],
    }
)
PAIRS = [("harm", "intent"), ("harm", "sa"), ("intent", "sa")]
PERFECT = pd.DataFrame({"a": [0.1, 0.2, 0.3], "b": [0.0, 0.5, 0.9]})


def exact_p(x: pd.Series, y: pd.Series) -> float:
    """The two-sided exact permutation p of Spearman's rho, with scipy's own spearmanr as the statistic."""
    return permutation_test(
        (x.to_numpy(),), lambda xs: spearmanr(xs, y).statistic, permutation_type="pairings", n_resamples=np.inf
    ).pvalue


def large(n: int = 30, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"a": x, "b": x + 2 * rng.normal(size=n)})


# --- Spearman table -------------------------------------------------------------------------------------


def test_spearman_rho_is_scipys_and_p_is_the_exact_permutation_p():
    known = KNOWN.tail(7)  # 7! pairings: quick for the reference, which calls spearmanr once per pairing
    table = spearman_table(known, PAIRS)
    assert list(table["group"]) == ["overall"] * 3
    for row in table.itertuples():
        assert row.rho == pytest.approx(spearmanr(known[row.x], known[row.y]).statistic)
        assert row.p == pytest.approx(exact_p(known[row.x], known[row.y]))
        assert (row.n, row.p_method, row.ci_method, row.warning) == (len(known), EXACT_P, BONETT_WRIGHT_CI, "")
        assert row.ci_lo < row.rho < row.ci_hi


def test_spearman_per_domain_includes_the_shared_base_variants():
    table = spearman_table(KNOWN, PAIRS, by="domain")
    assert list(dict.fromkeys(table["group"])) == ["overall", "trivia", "code"]
    trivia = KNOWN[KNOWN["domain"].isin(["trivia", "all"])]
    row = table[(table["group"] == "trivia") & (table["x"] == "harm") & (table["y"] == "sa")].iloc[0]
    assert row.n == len(trivia) == 6
    assert (row.rho, row.p) == (
        pytest.approx(spearmanr(trivia["harm"], trivia["sa"]).statistic),
        pytest.approx(exact_p(trivia["harm"], trivia["sa"])),
    )


def test_perfect_correlation_of_three_variants_is_not_significant_and_has_no_ci():
    row = spearman_table(PERFECT, [("a", "b")]).iloc[0]
    assert row.rho == 1.0
    assert row.p == pytest.approx(2 / 6)  # two of the 3! pairings are as extreme: rho = 1 and rho = -1
    assert np.isnan(row.ci_lo) and np.isnan(row.ci_hi) and row.ci_method == ""
    assert "N = 3 < 5" in row.warning and "CI not estimable" in row.warning


def test_few_variants_are_flagged_even_when_the_ci_exists():
    row = spearman_table(pd.DataFrame({"a": [0.1, 0.2, 0.3, 0.4], "b": [0.0, 0.9, 0.5, 0.7]}), [("a", "b")]).iloc[0]
    assert row.n == 4 and "N = 4 < 5" in row.warning
    assert row.ci_lo < row.rho < row.ci_hi and row.ci_method == BONETT_WRIGHT_CI


def test_perfect_correlation_has_no_fisher_ci_at_any_n():
    row = spearman_table(pd.DataFrame({"a": range(8), "b": range(8)}), [("a", "b")]).iloc[0]
    assert row.rho == 1.0 and np.isnan(row.ci_lo) and "|rho| = 1" in row.warning


def test_constant_empty_and_missing_columns_give_nan_and_a_warning():
    flat = spearman_table(KNOWN.assign(sa=0.3), [("harm", "sa")]).iloc[0]
    assert np.isnan(flat.rho) and np.isnan(flat.p) and flat.warning == "sa is constant"
    empty = spearman_table(KNOWN.assign(sa=np.nan), [("harm", "sa")]).iloc[0]
    assert empty.n == 0 and np.isnan(empty.rho) and "sa is empty" in empty.warning
    sparse = spearman_table(KNOWN.assign(sa=[np.nan] * 7 + [0.1, 0.2]), [("harm", "sa")]).iloc[0]
    assert sparse.n == 2 and np.isnan(sparse.rho) and "N = 2" in sparse.warning


def test_bonett_wright_ci_is_wider_than_the_pearson_fisher_ci():
    row = spearman_table(large(20), [("a", "b")]).iloc[0]
    z, n = np.arctanh(row.rho), 20
    assert np.arctanh(row.ci_hi) - z == pytest.approx(norm.ppf(0.975) * math.sqrt((1 + row.rho**2 / 2) / (n - 3)))
    assert np.arctanh(row.ci_hi) - z > norm.ppf(0.975) / math.sqrt(n - 3)
    assert z - np.arctanh(row.ci_lo) == pytest.approx(np.arctanh(row.ci_hi) - z)


def test_beyond_the_exact_limit_p_is_a_seeded_permutation_p():
    df = large(EXACT_MAX_N + 20)
    row = spearman_table(df, [("a", "b")], seed=3).iloc[0]
    assert row.p_method == MONTE_CARLO_P
    assert row.p == pytest.approx(spearmanr(df["a"], df["b"]).pvalue, abs=0.01)
    assert row.p == spearman_table(df, [("a", "b")], seed=3).iloc[0].p
    assert row.p != spearman_table(df, [("a", "b")], seed=4).iloc[0].p


def test_spearman_step_writes_the_same_bytes_every_run(tmp_path):
    variants = pd.concat([large(8).assign(domain="all"), large(8, 2).assign(domain="code")])  # overall N = 16: Monte Carlo
    variants.to_csv(tmp_path / "variants.tsv", sep="\t", index=False)
    outputs = [tmp_path / f"spearman{i}.tsv" for i in range(3)]
    for path, seed in zip(outputs, (5, 5, 6)):
        steps.spearman(str(tmp_path / "variants.tsv"), str(path), ["a", "b"], seed=seed, ci=0.95)
    assert outputs[0].read_bytes() == outputs[1].read_bytes() != outputs[2].read_bytes()
    assert outputs[0].read_text().splitlines()[0].split("\t") == [
        *["x", "y", "group", "n", "rho", "ci_lo", "ci_hi", "p"],
        *["p_method", "ci_method", "warning"],
    ]


# --- bootstrap ------------------------------------------------------------------------------------------


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.1, size=200)
    low, high, note = bootstrap_ci(values, n=500, seed=3)
    assert (low, high) == bootstrap_ci(values, n=500, seed=3)[:2] != bootstrap_ci(values, n=500, seed=4)[:2]
    assert low < values.mean() < high and note == ""
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(200), rel=0.25)


def test_bootstrap_ci_generic_stat_and_batched_agree():
    values = np.arange(20.0)
    looped = bootstrap_ci(values, np.median, n=300, seed=0)
    batched = bootstrap_ci(values, lambda draws: np.median(draws, axis=-1), n=300, seed=0, batched=True)
    assert looped == batched


def test_bootstrap_strata_keep_each_row_in_its_stratum():
    values = np.array([0.0, 1.0, 0.0, 10.0, 10.0])
    strata = ["a", "a", "a", "b", "b"]

    def first_stratum_mean(v):
        return v[:3].mean()

    low, high, _ = bootstrap_ci(values, first_stratum_mean, n=200, strata=strata)
    assert 0.0 <= low < high <= 1.0


def test_bootstrap_ci_without_spread_is_not_estimable_rather_than_zero_width():
    for values in ([], [0.4], [0.4, 0.4, 0.4]):
        low, high, note = bootstrap_ci(values)
        assert np.isnan(low) and np.isnan(high) and note


def test_bootstrap_ci_names_strata_that_cannot_vary():
    low, high, note = bootstrap_ci([0.0, 1.0, 0.5, 0.9], strata=["a", "a", "a", "b"])
    assert low < high and note == "1 of 2 strata hold one row and add no variance"


# --- the assessments' CIs -------------------------------------------------------------------------------

SELF = {
    "dimensions": str(ROOT / "resources/dimensions.yaml"),
    "formats": str(ROOT / "resources/selfassessment/formats.yaml"),
    "paraphrases": 1,
    "bootstrap": 200,
}


def harm_prompts(n: int) -> list[dict]:
    return [{"id": f"cat_{i:03d}", "messages": [], "meta": {"category": "cat"}} for i in range(n)]


def harm_judgments(maxima: list[int]) -> list[dict]:
    return [{"id": f"cat_{i:03d}", "sample": 0, "rating": rating} for i, rating in enumerate(maxima)]


def test_harmfulness_ci_follows_the_seed():
    prompts, judged = harm_prompts(30), harm_judgments([1, 2, 3, 4, 5] * 6)

    def ci(seed):
        return harmfulness.score(prompts, [], judged, None, {"bootstrap": 200, "seed": seed})["ci"]

    assert ci(1) == ci(1) != ci(2)


def test_harmfulness_ci_of_one_prompt_is_missing_with_a_reason():
    result = harmfulness.score(harm_prompts(1), [], harm_judgments([4]), None, {"bootstrap": 200})
    assert result["score"] == 0.75 and result["ci"] == [None, None] and "no spread" in result["ci_note"]


def answer_of(prompt: dict, number: int) -> dict:
    """Alternately the misaligned and the aligned answer of a closed-format prompt (language prompts are judged)."""
    meta, misaligned = prompt["meta"], number % 2 == 0
    fmt = meta["format"]
    if fmt == "decision":
        text = meta["misaligned_pole"] if misaligned else meta["aligned_pole"]
    else:
        low, high = selfassessment.SCALES.get(fmt, (0, 1))
        text = str(high if misaligned != meta["misaligned_first"] else low)
    return {"id": prompt["id"], "sample": number, "completion": text, "meta": meta}


def test_self_assessment_ci_with_one_prompt_per_cell_resamples_its_answers():
    prompts = [p for p in selfassessment.build_prompts(SELF) if not p["meta"]["misaligned_first"]]  # one per cell
    samples = [answer_of(p, n) for p in prompts for n in range(4)]
    judgments = [
        {"id": s["id"], "sample": s["sample"], "label": "misaligned" if s["sample"] % 2 == 0 else "aligned"} for s in samples
    ]
    result = selfassessment.score(prompts, samples, judgments, None, {**SELF, "seed": 0})
    assert result["score"] == pytest.approx(0.5)
    assert result["ci"][0] < 0.5 < result["ci"][1]
    assert "cells hold one prompt" in result["ci_note"]
    for row in result["by_dimension_format"]:
        assert row["ci"][0] < row["score"] < row["ci"][1]
    assert result["ci"] != selfassessment.score(prompts, samples, judgments, None, {**SELF, "seed": 1})["ci"]


def test_self_assessment_exact_score_of_one_prompt_per_cell_has_no_ci():
    prompts = [
        p for p in selfassessment.build_prompts(SELF) if not p["meta"]["misaligned_first"] and p["meta"]["format"] == "likert"
    ]
    logprobs = [{"id": p["id"], "logprobs": {"4": 0.0}} for p in prompts]
    result = selfassessment.score(prompts, [], None, logprobs, SELF)
    assert result["score_ev"] == pytest.approx(0.5)
    assert result["ci_ev"] == [None, None] and "no spread" in result["ci_ev_note"]


def test_intentions_ci_resamples_queries_within_their_dimension():
    settings = {
        "dimensions": SELF["dimensions"],
        "templates": str(ROOT / "resources/intentions/templates.yaml"),
        "queries_per_dimension": 10,
        "bootstrap": 200,
    }
    prompts = intentions.build_prompts(settings)
    first = prompts[0]["meta"]["dimension"]
    samples = [{"id": p["id"], "sample": 0, "completion": "text", "meta": p["meta"]} for p in prompts]
    labels = {p["id"]: "misaligned" if p["meta"]["dimension"] == first else "aligned" for p in prompts}
    judgments = [{"id": s["id"], "sample": 0, "label": labels[s["id"]]} for s in samples]
    result = intentions.score(prompts, samples, judgments, None, settings)
    # Every dimension is constant, so only a bootstrap that mixes the dimensions' shares would spread.
    assert result["score"] == pytest.approx(1 / 6) and result["ci"] == [None, None]
