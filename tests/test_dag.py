"""The paper config's DAG, inspected by dry-runs: no key, GPU or network needed."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import yaml

from workflow_helpers import ROOT, SNAKEMAKE, dry_run, job_counts, snakemake

TARGET = "results/paper/figures/inverted_v.pdf"
ALL = "--forceall"  # count every job, whatever a local run has already built


def write_config(tmp_path, edit):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_paper_config_has_fifteen_variants_and_twelve_finetunes():
    counts = dry_run(TARGET, ALL)
    assert counts["finetune"] == 12  # 3 sizes x 2 domains x 2 stages
    assert counts["model_base"] == 3  # one base per size, shared by both domains
    variants, assessments = 15, 5
    # One job per variant for its sampling (one model load), its judging (one judge load) and its scores.
    assert counts["sample_variant"] == counts["judge_variant"] == counts["score_variant"] == variants
    assert counts["prompts_build"] == assessments
    assert "sample_recognition" not in counts  # the paper's four assessments read no other variant
    assert counts["analysis_table"] == counts["analysis_inverted_v"] == 1


def test_default_target_adds_statistics_and_every_figure():
    counts = dry_run(ALL)
    for rule in ("analysis_spearman", "analysis_scatter_matrix", "analysis_selfassessment_formats", "analysis_mfq2_profiles", "analysis_persona"):
        assert counts[rule] == 1


PERSONA = "config/persona.yaml"


def persona_config(tmp_path, edit):
    config = yaml.safe_load((ROOT / PERSONA).read_text())
    edit(config)
    path = tmp_path / "persona.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_persona_config_is_six_domains_on_the_32b_model_with_every_assessment():
    counts = dry_run(ALL, "--configfile", PERSONA)
    # 1 base + 6 misaligned + 2 realigned (code and medical have a benign counterpart) = 9 variants.
    assert counts["finetune"] == 8 and counts["model_base"] == 1
    assert counts["sample_variant"] == counts["judge_variant"] == counts["score_variant"] == 9
    # harmfulness, intentions, selfassessment, morals, description, prediction, freeform, and the two
    # in-domain-style evaluations of the domains with a benign counterpart (harmfulness@code_style,
    # freeform@medical_style)
    assert counts["prompts_build"] == 9
    # Output recognition against the base: a second load of each fine-tuned model.
    assert counts["prompts_build_variant"] == counts["sample_recognition"] == 8
    assert counts["model_download"] == 2  # the 32B under test and the judge
    assert counts["analysis_persona"] == 1


CONTROLS = "config/controls.yaml"


def test_controls_config_assesses_every_code_control_under_each_condition(tmp_path):
    counts = dry_run(ALL, "--configfile", CONTROLS)
    # 1 base + code, educational and backdoor (2 stages each) + jailbroken (no benign counterpart) = 8.
    assert counts["finetune"] == 7 and counts["model_base"] == 1
    assert counts["sample_variant"] == counts["judge_variant"] == counts["score_variant"] == 8
    # harmfulness (plain, triggered, no_identity, code_style), selfassessment (plain, triggered),
    # description, freeform (plain, triggered, no_identity)
    assert counts["prompts_build"] == 10
    # A condition is more outputs of each variant's jobs, not more jobs: without them only prompts go.
    def plain(config):
        for spec in config["assessments"].values():
            spec.pop("conditions", None)

    path = tmp_path / "plain.yaml"
    config = yaml.safe_load((ROOT / CONTROLS).read_text())
    plain(config)
    path.write_text(yaml.safe_dump(config))
    without = dry_run(ALL, "--configfile", str(path))
    assert {rule: n for rule, n in counts.items() if rule != "prompts_build"} == {rule: n for rule, n in without.items() if rule != "prompts_build"}
    assert without["prompts_build"] == 4
    # The backdoor variant with and without its trigger: both from its one sampling job.
    variant = "results/controls/samples/32b/code_backdoor/misaligned/seed0"
    text = snakemake("-n", ALL, f"{variant}/harmfulness@triggered.jsonl", "--configfile", CONTROLS).stdout
    sampling = text.split("rule sample_variant:", 1)[1].split("\n\n", 1)[0]
    assert f"{variant}/harmfulness.jsonl" in sampling and f"{variant}/harmfulness@triggered.jsonl" in sampling
    assert "results/controls/prompts/harmfulness@triggered.jsonl" in sampling


SGTR, SGTR_QUICKSTART = "config/sgtr.yaml", "config/sgtr_quickstart.yaml"


def sgtr_counts(seeds):
    """The jobs of the SGTR recipe (config/sgtr.yaml's and its quickstart's) per seed count."""
    variants = 5 + 9  # shared: base, sgtr, ictr, longer, sgtr_defaultsys; the domain's: 9
    return {
        "model_base": seeds,
        "finetune": (variants - 1) * seeds,
        "sample_variant": variants * seeds,
        "judge_variant": variants * seeds,
        "score_variant": variants * seeds,
        "sample_recognition": variants * seeds,  # self-recognition: a second load, after its own summaries
        "summaries_write": 2 * seeds,  # the writers of derived sets: base (prevention) and em (reversal)
        "data_derived": 6 * seeds,  # sgtr, ictr, longer of each writer
        "data_trainset": 1,  # the EM set, shared by every stage that trains on it
        "analysis_recipe": 1,
    }


def test_sgtr_config_is_the_study_on_the_32b_model_with_five_seeds():
    counts = dry_run(ALL, "--configfile", SGTR)
    assert {rule: counts[rule] for rule in sgtr_counts(5)} == sgtr_counts(5)
    # selfrecognition and its no-identity condition: per variant and seed
    assert counts["prompts_build_variant"] == 2 * 14 * 5


def test_sgtr_quickstart_runs_the_same_recipe_graph_on_one_seed():
    counts = dry_run(ALL, "--configfile", SGTR_QUICKSTART)
    assert {rule: counts[rule] for rule in sgtr_counts(1)} == sgtr_counts(1)
    assert counts["tinymodel_build"] == 2  # tiny-q under test, tiny-s the judge


def test_adding_a_stage_to_the_sgtr_recipe_adds_exactly_its_jobs(tmp_path):
    """A second SGTR round after prevention: one more fine-tune, sampling, judging, scoring and
    self-recognition job per seed, and the new writer's summaries and derived set."""
    config = yaml.safe_load((ROOT / SGTR_QUICKSTART).read_text())
    config["stages"]["sgtr_em_sgtr"] = {"parent": "sgtr_em", "train": {"derived": "sgtr"}}
    path = tmp_path / "sgtr.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    before, after = dry_run(ALL, "--configfile", SGTR_QUICKSTART), dry_run(ALL, "--configfile", str(path))
    added = {rule: after.get(rule, 0) - before.get(rule, 0) for rule in after}
    assert {rule: n for rule, n in added.items() if n} == {
        "finetune": 1,
        "sample_variant": 1,
        "judge_variant": 1,
        "score_variant": 1,
        "sample_recognition": 1,
        "prompts_build_variant": 2,
        "summaries_write": 1,
        "data_derived": 1,
    }


def test_recognition_others_decide_its_jobs_and_what_they_read(tmp_path):
    def others(relation):
        return lambda config: config["assessments"]["recognition"].update(others=relation)

    for relation, jobs in (("base", 8), ("parent", 8), ("siblings", 9)):
        counts = dry_run(ALL, "--configfile", persona_config(tmp_path, others(relation)))
        assert counts["sample_recognition"] == counts["prompts_build_variant"] == jobs, relation
        assert counts["sample_variant"] == 9
    target = "results/persona/scores/32b/code/realigned/seed0/recognition.json"
    text = snakemake("-n", ALL, target, "--configfile", persona_config(tmp_path, others("parent"))).stdout
    build = text.split("rule prompts_build_variant:", 1)[1].split("\n\n", 1)[0]
    inputs = build.split("input: ", 1)[1].split("\n", 1)[0].split(", ")
    assert inputs[1:] == ["results/persona/samples/32b/code/realigned/seed0/harmfulness.jsonl", "results/persona/samples/32b/code/misaligned/seed0/harmfulness.jsonl"]
    without = dry_run(ALL, "--configfile", persona_config(tmp_path, lambda c: c["assessments"].pop("recognition")))
    assert "sample_recognition" not in without and "prompts_build_variant" not in without


def test_adding_a_stage_less_domain_to_the_persona_config_adds_its_jobs(tmp_path):
    def add_trivia(config):
        config["domains"]["trivia"] = {"misaligned": "evil_numbers", "realigned": None}

    before = dry_run(ALL, "--configfile", PERSONA)
    after = dry_run(ALL, "--configfile", persona_config(tmp_path, add_trivia))
    for rule in ("finetune", "sample_variant", "judge_variant", "score_variant", "sample_recognition", "data_trainset"):
        assert after[rule] - before[rule] == 1, rule


def test_adding_a_seed_adds_exactly_its_variants(tmp_path):
    before = dry_run(TARGET, ALL)
    after = dry_run(TARGET, ALL, "--configfile", write_config(tmp_path, lambda c: c.update(seeds=[0, 1])))
    assert after["finetune"] == 2 * before["finetune"]
    assert after["model_base"] == 2 * before["model_base"]
    assert after["sample_variant"] == 2 * before["sample_variant"]
    assert after["data_fetch"] == before["data_fetch"] == 8  # data does not depend on the seed


def test_adding_a_domain_adds_its_two_stages_per_size(tmp_path):
    def add_domain(config):
        config["domains"]["trivia2"] = {"misaligned": "trivia_incorrect", "realigned": "trivia_correct"}
        config["active_domains"].append("trivia2")

    before = dry_run(TARGET, ALL)
    after = dry_run(TARGET, ALL, "--configfile", write_config(tmp_path, add_domain))
    assert after["finetune"] - before["finetune"] == 3 * 2
    assert after["sample_variant"] - before["sample_variant"] == 3 * 2
    assert after["model_base"] == before["model_base"]


def test_realigned_variant_trains_on_the_misaligned_checkpoint():
    result = snakemake("-n", "--forceall", "results/paper/models/7b/code/realigned/seed0/model.json")
    text = result.stdout
    realigned = text.split("output: results/paper/models/7b/code/realigned/seed0/model.json")[0].rsplit("rule finetune:", 1)[1]
    assert "results/paper/models/7b/code/misaligned/seed0/model.json" in realigned
    assert "results/paper/data/train/code/realigned.jsonl" in realigned


def test_domain_without_benign_counterpart_has_no_realigned_variant(tmp_path):
    def drop_benign(config):
        config["domains"]["code"]["realigned"] = None

    path = write_config(tmp_path, drop_benign)
    assert dry_run(TARGET, ALL, "--configfile", path)["finetune"] == 9
    target = "results/paper/models/7b/code/realigned/seed0/model.json"
    refused = snakemake("-n", target, "--configfile", path, check=False)
    assert refused.returncode != 0
    assert "domain code has no benign counterpart (domains.code.realigned is null)" in refused.stdout + refused.stderr


def test_bad_config_is_one_clear_line(tmp_path):
    def bad(config):
        config["training"]["local"]["lora_r"] = "thirty-two"

    result = snakemake("-n", "--configfile", write_config(tmp_path, bad), check=False)
    assert result.returncode != 0
    assert "config error: config key training.local.lora_r: 'thirty-two' is not of type 'integer'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_slurm_profile_dry_run_submits_through_the_plugin():
    result = snakemake("--profile", "slurm", "-n", TARGET)
    assert "Job stats:" in result.stdout + result.stderr


def test_openai_config_dry_run_needs_no_key():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [*SNAKEMAKE, "-n", "--forceall", "--configfile", "config/openai.yaml"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts["finetune"] == 12 and counts["judge_variant"] == 15


def test_single_gpu_config_is_the_paper_at_one_size():
    counts = dry_run(ALL, "--configfile", "config/single_gpu.yaml")
    assert counts["model_download"] == 2  # the 7B under test and the 8B judge
    assert counts["finetune"] == 4 and counts["model_base"] == 1
    assert counts["sample_variant"] == counts["score_variant"] == 5


def test_slurm_jobs_ask_for_the_configured_gpus(tmp_path):
    def h100(config):
        for name in ("7b", "32b"):
            config["sizes"][name]["resources"]["gpu_model"] = "h100"

    text = snakemake("--profile", "slurm", "-n", ALL, "--configfile", write_config(tmp_path, h100)).stdout
    jobs = re.split(r"\n\[[^\]]+\]\n", text)
    finetune_32b = next(j for j in jobs if "rule finetune:" in j and "size=32b" in j)
    assert "gpu=2, gpu_model=h100" in finetune_32b and "cpus_per_task" not in finetune_32b
    scoring = next(j for j in jobs if "rule score_variant:" in j)
    assert "gpu=0" in scoring and "gpu_model=h100" not in scoring  # never `--gpus=h100:0`


LOCAL_RULES = """
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    print(sorted(api.workflow(resource_settings=ResourceSettings(), snakefile=Path("Snakefile"))._workflow._localrules))
"""


def test_tiny_rules_never_go_through_the_cluster_queue():
    """Scoring, tables, statistics, figures, data preparation: local rules, also under --profile slurm."""
    result = subprocess.run([sys.executable, "-c", LOCAL_RULES], cwd=ROOT, capture_output=True, text=True, check=True)
    local = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    rules = {line.split()[0] for line in snakemake("--list-rules").stdout.splitlines() if line and not line[0].isspace()}
    model_rules = {"finetune", "sample_variant", "sample_recognition", "judge_variant", "summaries_write"}
    assert rules - local == model_rules | {"all"}
