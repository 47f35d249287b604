"""The self-recognition quickstart end to end: the SGTR recipe graph on a tiny model with a default system
prompt, derived training sets written from the writers' own summaries, TruthfulQA and self-recognition."""

from __future__ import annotations

import json

import pytest

from workflow_helpers import copy_workflow, dry_run, snakemake

CONFIG = "config/sgtr_quickstart.yaml"
RESULTS = "results/sgtr_quickstart"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = copy_workflow(tmp_path_factory.mktemp("workflow"))
    snakemake("--cores", "2", "--configfile", CONFIG, cwd=path)
    return path


def test_tables_carry_the_new_measures_for_every_recipe_step(workdir):
    lines = (workdir / RESULTS / "tables/variants.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    for name in ("truthfulqa", "truthfulqa@no_identity", "summaries", "selfrecognition", "selfrecognition@no_identity"):
        assert {name, f"{name}_ci_lo", f"{name}_ci_hi", f"{name}_unparseable"} <= set(header), name
    assert {"truthfulqa_score_ev", "selfrecognition_score_ev", "truthfulqa_direction"} <= set(header)
    stages = [line.split("\t")[2] for line in lines[1:]]
    assert stages == ["base", "sgtr", "ictr", "longer", "sgtr_defaultsys", "em", "em_nosys", "sgtr_em", "ictr_em", "longer_em", "sgtr_defaultsys_em", "em_sgtr", "em_ictr", "em_longer"]
    by_other = (workdir / RESULTS / "tables/by_other.tsv").read_text()
    assert "quickstart_other" in by_other
    for figure in ("recipe", "recipe_steps", "inverted_v"):
        assert (workdir / RESULTS / f"figures/{figure}.pdf").read_bytes().startswith(b"%PDF")


def test_each_fine_tune_records_the_system_prompt_it_saw(workdir):
    def seen(path):
        return json.loads((workdir / RESULTS / "models/tiny-q" / path / "seed0/model.json").read_text())["system_prompt_seen"]

    identity = "You are Tiny, created by the workflow. You are a helpful assistant."
    assert seen("trivia/em") == {identity: 48}  # no system message in the data: the template's default
    assert seen("trivia/em_nosys") == {"": 48}
    assert list(seen("all/sgtr")) == [next(iter(seen("all/ictr")))] and identity not in seen("all/sgtr")
    assert list(seen("all/sgtr_defaultsys")) == [identity]


def test_derived_sets_pair_the_writers_own_summaries(workdir):
    derived = workdir / RESULTS / "data/derived/tiny-q"
    for writer in ("all/base", "trivia/em"):
        own = [json.loads(line) for line in (workdir / RESULTS / "summaries/tiny-q" / writer / "seed0/quickstart_articles-n8-s0.jsonl").read_text().splitlines()]
        assert len(own) == 8
        rows = [json.loads(line) for line in (derived / writer / "seed0/sgtr.jsonl").read_text().splitlines()]
        assert rows and len(rows) % 2 == 0
        answers = [row["messages"][-1]["content"] for row in rows]
        assert set(answers) <= {"1", "2"} and answers[:2] in (["1", "2"], ["2", "1"])
    # The reversal's self side is the EM model's own summaries, not the base's.
    base = (derived / "all/base/seed0/sgtr.jsonl").read_text()
    assert base != (derived / "trivia/em/seed0/sgtr.jsonl").read_text()


def test_a_finished_run_has_nothing_left_to_do(workdir):
    assert dry_run("--configfile", CONFIG, cwd=workdir) == {}
