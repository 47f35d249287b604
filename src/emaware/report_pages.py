"""The report's answer browser: one self-contained HTML page with the variants and their scores, then, per
variant and judged assessment, the answers the judge rated most misaligned, with the prompt and the judge's
rating or label.

Answers can be harmful: every text goes through `html.escape` (shown, never run) and the page has no
script. It is a local results file: no answer reaches a log.
"""

from __future__ import annotations

import html
import math
from typing import Iterable

import pandas as pd

from . import UserError
from .config import Variant

TOP_K = 5  # per variant and assessment: enough to see what the judge rated high, short enough to read
MISALIGNED = "misaligned"
Section = tuple[dict, str, list[tuple[dict, dict]]]  # (variant {size, domain, stage, seed}, assessment, top answers)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: 0.9em; }
.role { color: #666; font-weight: bold; }
.note { color: #555; }
.warning { color: #a00; font-weight: bold; }
"""


def severity(judgment: dict) -> float | None:
    """How misaligned the judge found an answer: its expected 1–5 rating (harmfulness), 100 minus its 0–100
    aligned value (freeform) or the probability of the misaligned label (label assessments); None where the
    judge gave it no score."""
    if "rating" in judgment:
        return judgment["rating"]
    if "aligned" in judgment:
        return None if judgment["aligned"] is None else 100 - judgment["aligned"]
    return judgment["probs"].get(MISALIGNED) if judgment.get("label") is not None else None


def top_answers(samples: list[dict], judgments: list[dict], k: int = TOP_K) -> list[tuple[dict, dict]]:
    """The `k` (sample, judgment) pairs of highest severity, highest first (ties: by prompt id, sample)."""
    by_key = {(s["id"], s["sample"]): s for s in samples}
    scored = []
    for judgment in judgments:
        key = (judgment["id"], judgment["sample"])
        if key not in by_key:
            raise UserError(f"judgment of {key[0]}#{key[1]} has no sample: judge the samples file again")
        if severity(judgment) is not None:
            scored.append((by_key[key], judgment))
    scored.sort(key=lambda pair: (-severity(pair[1]), pair[0]["id"], pair[0]["sample"]))
    return scored[:k]


def answers_page(
    table: pd.DataFrame, assessments: list[str], sections: Iterable[Section], title: str, k: int = TOP_K, note: str | None = None
) -> str:
    """The whole page: the scores of every variant of the variants table, then the `sections` (top `k` each)
    in order; `note`, a warning on top (config.toy_note)."""
    warning = [f"<p class='warning'>{_esc(note)}</p>"] if note else []
    body = [f"<h1>{_esc(title)}</h1>", *warning, _intro(k), "<h2 id='variants'>Variants and scores</h2>", _scores(table, assessments)]
    shown = None
    for variant, assessment, answers in sections:
        if variant != shown:
            path = Variant(**variant).path
            body.append(f"<h2 id='{_esc(_anchor(path))}'>{_esc(path)}</h2>")
            shown = variant
        body.append(_answers(assessment, answers))
    head = f"<meta charset='utf-8'><title>{_esc(title)}</title><style>{STYLE}</style>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(body) + "\n</body></html>\n"


def _intro(k: int) -> str:
    return (
        "<p class='note'>Model answers, possibly harmful, shown as text. Per variant and judged assessment, the "
        f"{k} answers the judge rated most misaligned: harmfulness by the expected rating (1–5), freeform by the "
        "lowest aligned value (0–100), the label assessments by the probability of the misaligned label. Answers "
        "the judge could not score are left out.</p>"
    )


def _scores(table: pd.DataFrame, assessments: list[str]) -> str:
    """A row per variant: its identity, a link to its answers and each score as `value [CI] N`."""
    head = "".join(f"<th>{_esc(name)}</th>" for name in ["variant", *assessments])
    rows = []
    for _, row in table.iterrows():
        path = Variant(row["size"], row["domain"], row["stage"], int(row["seed"])).path
        cells = [f"<td><a href='#{_esc(_anchor(path))}'>{_esc(path)}</a></td>"]
        cells += [f"<td>{_esc(_score(row, name))}</td>" for name in assessments]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table class='scores'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _score(row: pd.Series, name: str) -> str:
    value, low, high, n = (row.get(key) for key in (name, f"{name}_ci_lo", f"{name}_ci_hi", f"{name}_n"))
    if _missing(value):
        return "no score"
    interval = "no CI" if _missing(low) or _missing(high) else f"{low:.2f}–{high:.2f}"
    return f"{value:.2f} [{interval}]" + ("" if _missing(n) else f" N={int(n)}")


def _answers(assessment: str, answers: list[tuple[dict, dict]]) -> str:
    rows = "".join(
        f"<tr><td>{rank}</td><td>{_esc(_verdict(judgment))}</td><td>{_prompt(sample)}</td>"
        f"<td class='text answer'>{_esc(sample['completion'])}</td></tr>"
        for rank, (sample, judgment) in enumerate(answers, 1)
    )
    if not rows:
        return f"<h3>{_esc(assessment)}</h3><p class='note'>No answer the judge could score.</p>"
    head = "<tr><th>#</th><th>judge</th><th>prompt</th><th>answer</th></tr>"
    return f"<h3>{_esc(assessment)}</h3><table class='answers'><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _verdict(judgment: dict) -> str:
    """The judge's rating, its aligned and coherent values, or its label with the probability of each label."""
    if "rating" in judgment:
        return f"rating {judgment['rating']:.2f} of 5"
    if "aligned" in judgment:
        coherent = "none" if judgment["coherent"] is None else f"{judgment['coherent']:.1f}"
        return f"aligned {judgment['aligned']:.1f}, coherent {coherent} (0–100)"
    probs = ", ".join(f"{label} {p:.2f}" for label, p in judgment["probs"].items())
    return f"{judgment['label']} ({probs})"


def _prompt(sample: dict) -> str:
    return "".join(
        f"<div class='text'><span class='role'>{_esc(m['role'])}:</span> {_esc(m['content'])}</div>" for m in sample["messages"]
    )


def _anchor(path: str) -> str:
    return "variant-" + path.replace("/", "-")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _esc(text) -> str:
    return html.escape(str(text), quote=True)
