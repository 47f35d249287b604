"""Bootstrap CIs (numpy only, so scoring a variant does not import pandas or scipy)."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np


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
