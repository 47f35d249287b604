"""The end-of-run summary: where the results are, unscored answers, and warnings that change a result's meaning."""

from __future__ import annotations

import pandas as pd
import pytest

from emaware import config as emconfig
from emaware.io import read_yaml
from emaware.run_summary import summary_lines
from workflow_helpers import ROOT


@pytest.fixture
def quickstart():
    return emconfig.validate(read_yaml(ROOT / "config/quickstart.yaml"), ROOT / "workflow/schemas/config.schema.yaml")


def test_a_finished_run_says_where_its_results_are_and_what_was_not_scored(tmp_path, monkeypatch, quickstart):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "results/quickstart"
    (root / "tables").mkdir(parents=True)
    pd.DataFrame(
        {"size": ["s", "s"], "harmfulness": [0.1, 0.2], "harmfulness_n": [10, 10], "harmfulness_unparseable": [1, 2],
         "harmfulness_refusals": [0, 3]}
    ).to_csv(root / "tables/variants.tsv", sep="\t", index=False)
    (root / "stats").mkdir()
    pd.DataFrame({"x": ["a", "a"], "warning": ["N = 3 < 5: too few variants", None]}).to_csv(
        root / "stats/spearman.tsv", sep="\t", index=False
    )
    (root / "data/train/trivia").mkdir(parents=True)
    (root / "data/train/trivia/misaligned.jsonl").write_text("{}\n" * 5)
    quickstart["domains"]["trivia"]["n"] = 8
    lines = summary_lines(quickstart, ["config/quickstart.yaml"])
    text = "\n".join(lines)
    assert lines[0].startswith("run 'quickstart': results in results/quickstart/")
    assert "snakemake --report results/quickstart/report.html --configfile config/quickstart.yaml" in text
    assert "harmfulness: 20 n, 3 unparseable, 3 refusals" in text
    assert "domain trivia: its misaligned set has 5 rows, 8 asked (domains.trivia.n)" in text
    assert "1 of 2 correlations" in text and "N = 3 < 5" in text
    assert "is the base model of size 'tiny-s'" in text  # the quickstart judges with its own model


def test_nothing_to_warn_about_before_anything_ran(tmp_path, monkeypatch, quickstart):
    monkeypatch.chdir(tmp_path)
    quickstart["judge"]["model"] = "another-model"
    assert [line for line in summary_lines(quickstart, []) if line.startswith("warning")] == []


def test_unpinned_hub_weights_are_warned_about_at_the_end_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper = emconfig.validate(read_yaml(ROOT / "config/config.yaml"), ROOT / "workflow/schemas/config.schema.yaml")
    paper["sizes"]["7b"]["revision"] = "main"
    assert any("sizes.7b.revision 'main' is not a commit" in line for line in summary_lines(paper, []))
