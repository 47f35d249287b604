"""Spearman tables across variants: permutation p-values and Fisher-z CIs (pandas and scipy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .seeds import derive_seed
from .stats import Interval

SPEARMAN_COLUMNS = ["x", "y", "group", "n", "rho", "ci_lo", "ci_hi", "p", "p_method", "ci_method", "warning"]
EXACT_MAX_N = 10  # up to 10! = 3.6 million pairings the exact test takes seconds; beyond, it explodes
PERMUTATIONS = 100_000  # Monte Carlo permutation test beyond EXACT_MAX_N: p resolves to 1e-5
PERMUTATION_BATCH = 100_000  # pairings evaluated at once (bounds the memory of the exact test)
FEW_VARIANTS = 5  # below this a rank correlation is too coarse to trust, whatever its p
EXACT_P = "exact permutation, two-sided"
MONTE_CARLO_P = f"permutation ({PERMUTATIONS} seeded resamples), two-sided"
BONETT_WRIGHT_CI = "Fisher z, Bonett-Wright SE"
UNDEFINED = {"rho": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "p": np.nan, "p_method": "", "ci_method": ""}


def _undefined(x: pd.Series, y: pd.Series, keep: pd.Series) -> list[str]:
    """Why rho cannot be computed from the rows `keep` of these columns (empty list when it can)."""
    n = int(keep.sum())
    if n < 3:
        return [f"{s.name} is empty" for s in (x, y) if s.isna().all()] + [f"N = {n}: rho needs at least 3 pairs"]
    return [f"{s.name} is constant" for s in (x, y) if s[keep].nunique() == 1]


def _permutation_p(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, str]:
    """Two-sided permutation p of Spearman's rho: every pairing up to EXACT_MAX_N pairs, else PERMUTATIONS
    pairings drawn with `seed`. (scipy's `spearmanr` p is a t approximation, far off at a few variants.)"""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    cy = ry - ry.mean()
    scale = np.sqrt(np.sum((rx - rx.mean()) ** 2) * np.sum(cy**2))

    def rho(ranks: np.ndarray, axis: int = -1) -> np.ndarray:
        # Spearman's rho is the correlation of the midranks; written out because the test evaluates up to
        # 10! pairings and scipy's pearsonr, which also computes a p for each, is ~7x slower. Permuting x
        # changes neither its mean nor its scale.
        return np.sum((ranks - rx.mean()) * cy, axis=axis) / scale

    exact = len(x) <= EXACT_MAX_N
    result = stats.permutation_test(
        (rx,),
        rho,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=np.inf if exact else PERMUTATIONS,
        batch=PERMUTATION_BATCH,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue), EXACT_P if exact else MONTE_CARLO_P


def _bonett_wright_ci(rho: float, n: int, level: float) -> Interval:
    """Fisher-z CI of Spearman's rho with the Bonett & Wright (2000) standard error sqrt((1 + rho²/2)/(n − 3)).

    Written here because scipy and pingouin only offer the Pearson error 1/sqrt(n − 3), too narrow for a rank
    correlation. Deterministic, unlike a bootstrap over a handful of variants, whose resamples are mostly ties.
    """
    if n <= 3:
        return Interval(np.nan, np.nan, f"CI not estimable at N = {n} (needs 4)")
    if np.isclose(abs(rho), 1.0):
        return Interval(np.nan, np.nan, "CI not estimable: |rho| = 1")
    half = stats.norm.ppf((1 + level) / 2) * np.sqrt((1 + rho**2 / 2) / (n - 3))
    return Interval(float(np.tanh(np.arctanh(rho) - half)), float(np.tanh(np.arctanh(rho) + half)))


def _spearman(x: pd.Series, y: pd.Series, seed: int, level: float) -> dict:
    """n, rho, CI, p, the methods and the warnings of one pair of columns (rows missing either value dropped)."""
    keep = x.notna() & y.notna()
    n = int(keep.sum())
    problems = _undefined(x, y, keep)
    if problems:
        return {"n": n, **UNDEFINED, "warning": "; ".join(problems)}
    xs, ys = x[keep].to_numpy(float), y[keep].to_numpy(float)
    rho = float(stats.spearmanr(xs, ys).statistic)
    p, p_method = _permutation_p(xs, ys, seed)
    interval = _bonett_wright_ci(rho, n, level)
    warnings = [f"N = {n} < {FEW_VARIANTS}: too few variants to trust a correlation"] if n < FEW_VARIANTS else []
    warnings += [interval.note] if interval.note else []
    return {
        "n": n,
        "rho": rho,
        "ci_lo": interval.low,
        "ci_hi": interval.high,
        "p": p,
        "p_method": p_method,
        "ci_method": "" if interval.note else BONETT_WRIGHT_CI,
        "warning": "; ".join(warnings),
    }


def spearman_table(
    df: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    by: str | None = None,
    shared: str = "all",
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Spearman rho between each pair of columns across the rows of `df` (one row per variant).

    The `overall` group uses every row. With `by` (e.g. "domain") there is also one group per value of
    that column, and rows whose value is `shared` (base variants, domain "all") belong to every group.
    Columns: x, y, group, n, rho, ci_lo, ci_hi (level `ci`), p, p_method, ci_method, warning ("" when
    fine). The permutation draws of a row are seeded by `seed`, the group and the pair, so the table is
    the same on every run and does not depend on the order of the pairs.
    """
    groups = {"overall": df}
    if by is not None:
        for value in dict.fromkeys(df[by]):
            if value != shared:
                groups[str(value)] = df[(df[by] == value) | (df[by] == shared)]
    rows = [
        {"x": x, "y": y, "group": name, **_spearman(part[x], part[y], derive_seed(seed, "spearman", name, x, y), ci)}
        for name, part in groups.items()
        for x, y in pairs
    ]
    return pd.DataFrame(rows, columns=SPEARMAN_COLUMNS)
