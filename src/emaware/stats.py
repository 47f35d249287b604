"""Statistics shared by the assessments and the analysis: bootstrap CIs and Spearman tables."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .seeds import derive_seed

SPEARMAN_COLUMNS = ["x", "y", "group", "n", "rho", "ci_lo", "ci_hi", "p", "p_method", "ci_method", "warning"]
EXACT_MAX_N = 10  # up to 10! = 3.6 million pairings the exact test takes seconds; beyond, it explodes
PERMUTATIONS = 100_000  # Monte Carlo permutation test beyond EXACT_MAX_N: p resolves to 1e-5
PERMUTATION_BATCH = 100_000  # pairings evaluated at once (bounds the memory of the exact test)
FEW_VARIANTS = 5  # below this a rank correlation is too coarse to trust, whatever its p
EXACT_P = "exact permutation, two-sided"
MONTE_CARLO_P = f"permutation ({PERMUTATIONS} seeded resamples), two-sided"
BONETT_WRIGHT_CI = "Fisher z, Bonett-Wright SE"
UNDEFINED = {"rho": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "p": np.nan, "p_method": "", "ci_method": ""}


class Interval(NamedTuple):
    """A CI; NaN bounds when it is not estimable, with the reason in `note` (which may also name a limit)."""

    low: float
    high: float
    note: str = ""


def bootstrap_ci(
    values: Sequence | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    strata: Sequence | None = None,
    batched: bool = False,
) -> Interval:
    """Percentile bootstrap CI of `stat` over the rows (axis 0) of `values`.

    With `strata`, every row is redrawn from its own stratum and the resampled array keeps the original
    layout (row i always comes from stratum strata[i]), so `stat` may rely on row positions, e.g. to
    average per cell before averaging cells. With `batched`, `stat` gets all draws at once (an extra
    leading axis of length `n`) and returns `n` estimates. Not estimable (NaN and a note) when there is
    nothing to resample, `stat` gives NaN, or the draws do not spread: a zero-width interval would claim
    a certainty that only reflects too few or identical rows.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return Interval(np.nan, np.nan, "nothing to resample")
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [np.arange(len(values))]
    else:
        labels = np.asarray(strata)
        groups = [np.flatnonzero(labels == s) for s in dict.fromkeys(labels.tolist())]
    index = np.empty((n, len(values)), dtype=int)
    for rows in groups:
        index[:, rows] = rng.choice(rows, size=(n, len(rows)))
    if stat is np.mean and values.ndim == 1:
        stat, batched = (lambda draws: draws.mean(axis=1)), True  # the common case, without a Python loop
    if batched:
        estimates = np.asarray(stat(values[index]), dtype=float)
    else:
        estimates = np.array([stat(values[draw]) for draw in index], dtype=float)
    if np.isnan(estimates).any():
        return Interval(np.nan, np.nan, "the statistic is undefined in some resamples")
    tail = (1 - ci) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    if np.isclose(low, high, rtol=0.0, atol=1e-12):  # float noise is no spread
        return Interval(np.nan, np.nan, f"no spread: {len(values)} row(s), every resample gives the same estimate")
    single = sum(len(rows) == 1 for rows in groups)
    note = f"{single} of {len(groups)} strata hold one row and add no variance" if single else ""
    return Interval(float(low), float(high), note)


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
