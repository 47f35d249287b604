"""Score files → tables: one row per variant (variants.tsv) and one row per variant × breakdown level
(per dimension, per format, per foundation …).

A score file is a JSON object: top-level numbers (score, n, unparseable …), CI pairs (`ci`, `ci_ev`,
`measured_ci` …: two-element lists, split into `_lo`/`_hi` columns), and breakdowns `by_<name>`: a list of
rows that carry their own level columns (`{"dimension": "good-evil", "score": …}`), or a mapping
{level: number} / {level: {stats}}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .io import atomic_write, read_json

IDENTITY = ["size", "domain", "stage", "seed"]
LEADING = ["score", "ci_lo", "ci_hi", "n", "unparseable", "refusals", "unclear"]
Record = tuple[dict, str, dict]  # (variant {size, domain, stage, seed}, assessment name, score file content)
# Columns computed from two score columns of one variant: (name, minuend, subtrahend). Score prediction's
# signed error: how far a variant over- (+) or under- (−) states its measured harmfulness, both on 0–1.
DIFFERENCES = (
    ("prediction_error", "prediction", "harmfulness"),
    ("prediction_ev_error", "prediction_score_ev", "harmfulness"),
)


def read_records(entries: Iterable[tuple[dict, str, str | Path]]) -> list[Record]:
    """Records from (variant, assessment, score file path) triples."""
    return [(variant, assessment, read_json(path)) for variant, assessment, path in entries]


def flatten(stats: dict) -> dict[str, Any]:
    """Scalar fields of one score or breakdown row; CI pairs become `<key>_lo`/`<key>_hi`; nested data is left out."""
    flat = {}
    for key, value in stats.items():
        if isinstance(value, list) and len(value) == 2 and (key == "ci" or key.startswith("ci_") or key.endswith("_ci")):
            flat[f"{key}_lo"], flat[f"{key}_hi"] = value
        elif value is None or isinstance(value, (int, float, str, bool)):
            flat[key] = value
    return flat


def _ordered(columns: list[str], leading: list[str]) -> list[str]:
    return [c for c in leading if c in columns] + [c for c in columns if c not in leading]


def variants_table(records: Iterable[Record]) -> pd.DataFrame:
    """One row per variant (order of first appearance): identity columns, then per assessment its score
    under the assessment's name and every other field as `<assessment>_<field>`; the DIFFERENCES last."""
    rows: dict[tuple, dict] = {}
    columns: dict[str, None] = dict.fromkeys(IDENTITY)
    for variant, assessment, result in records:
        row = rows.setdefault(tuple(variant[k] for k in IDENTITY), {k: variant[k] for k in IDENTITY})
        fields = {k: v for k, v in flatten(result).items() if k != "assessment"}
        for key in _ordered(list(fields), LEADING):
            name = assessment if key == "score" else f"{assessment}_{key}"
            row[name] = fields[key]
            columns.setdefault(name)
    return with_differences(pd.DataFrame(list(rows.values()), columns=list(columns)))


def with_differences(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with each of DIFFERENCES whose two columns it has (empty where either score is missing)."""
    for name, minuend, subtrahend in DIFFERENCES:
        if {minuend, subtrahend} <= set(table.columns):
            table[name] = table[minuend].astype(float) - table[subtrahend].astype(float)
    return table


def _breakdown_rows(name: str, breakdown: list | dict) -> list[dict]:
    if isinstance(breakdown, list):
        return [flatten(row) for row in breakdown]
    return [{name: level, **(flatten(v) if isinstance(v, dict) else {"score": v})} for level, v in breakdown.items()]


def breakdown_names(records: Iterable[Record]) -> list[str]:
    """The breakdowns present in any score file (`by_dimension` → "dimension")."""
    return list(dict.fromkeys(key[3:] for _, _, result in records for key in result if key.startswith("by_")))


def breakdown_table(records: Iterable[Record], name: str) -> pd.DataFrame:
    """One row per variant × assessment × level of the `by_<name>` breakdown."""
    rows = [
        {**{k: variant[k] for k in IDENTITY}, "assessment": assessment, **row}
        for variant, assessment, result in records
        if f"by_{name}" in result
        for row in _breakdown_rows(name, result[f"by_{name}"])
    ]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=[*IDENTITY, "assessment"])
    fixed = [*IDENTITY, "assessment"]
    levels = [
        c
        for c in table.columns
        if c not in fixed and not c.endswith("_note") and table[c].map(lambda v: isinstance(v, str)).any()
    ]
    return table[fixed + levels + _ordered([c for c in table.columns if c not in fixed + levels], LEADING)]


def write_tsv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_write(path) as handle:
        table.to_csv(handle, sep="\t", index=False)
