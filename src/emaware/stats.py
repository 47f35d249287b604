"""Statistics shared by the assessments and the analysis: bootstrap CIs and Spearman tables."""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd

SPEARMAN_COLUMNS = ["x", "y", "group", "n", "rho", "ci_lo", "ci_hi", "p"]


def bootstrap_ci(
    values: Sequence | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    n: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    strata: Sequence | None = None,
    batched: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` over the rows (axis 0) of `values`.

    With `strata`, every row is redrawn from its own stratum and the resampled array keeps the original
    layout (row i always comes from stratum strata[i]), so `stat` may rely on row positions, e.g. to
    average per cell before averaging cells. With `batched`, `stat` gets all draws at once (an extra
    leading axis of length `n`) and returns `n` estimates. NaN when there is nothing to resample or
    `stat` gives NaN.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
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
        return float("nan"), float("nan")
    tail = (1 - ci) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def _spearman(x: pd.Series, y: pd.Series) -> dict:
    """rho, N, 95% CI and p from pingouin; NaN where fewer than 3 pairs or a constant column."""
    keep = x.notna() & y.notna()
    n = int(keep.sum())
    if n < 3 or x[keep].nunique() < 2 or y[keep].nunique() < 2:
        return {"n": n, "rho": np.nan, "ci_lo": np.nan, "ci_hi": np.nan, "p": np.nan}
    import pingouin as pg  # slow to import; only the analysis needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pingouin warns that power is not estimable for small n
        row = pg.corr(x[keep].to_numpy(float), y[keep].to_numpy(float), method="spearman").iloc[0]
    ci, p = row.get("CI95", row.get("CI95%")), row.get("p_val", row.get("p-val"))  # names differ across versions
    return {"n": n, "rho": float(row["r"]), "ci_lo": float(ci[0]), "ci_hi": float(ci[1]), "p": float(p)}


def spearman_table(
    df: pd.DataFrame, pairs: Sequence[tuple[str, str]], by: str | None = None, shared: str = "all"
) -> pd.DataFrame:
    """Spearman rho between each pair of columns across the rows of `df` (one row per variant).

    The `overall` group uses every row. With `by` (e.g. "domain") there is also one group per value of
    that column, and rows whose value is `shared` (base variants, domain "all") belong to every group.
    Columns: x, y, group, n, rho, ci_lo, ci_hi (pingouin's 95% CI), p.
    """
    groups = {"overall": df}
    if by is not None:
        for value in dict.fromkeys(df[by]):
            if value != shared:
                groups[str(value)] = df[(df[by] == value) | (df[by] == shared)]
    rows = [{"x": x, "y": y, "group": name, **_spearman(part[x], part[y])} for name, part in groups.items() for x, y in pairs]
    return pd.DataFrame(rows, columns=SPEARMAN_COLUMNS)
