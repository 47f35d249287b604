"""What reaches a rule's params (only what changes its result), seeds per job, config warnings and overrides."""

from __future__ import annotations

import pytest

from emaware import config as emconfig
from emaware import rule_params
from emaware.config import Variant
from emaware.io import read_yaml
from workflow_helpers import ROOT, dry_run, snakemake

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def quickstart():
    return emconfig.validate(read_yaml(ROOT / "config/quickstart.yaml"), SCHEMA)


@pytest.fixture(scope="module")
def paper():
    return emconfig.validate(read_yaml(ROOT / "config/config.yaml"), SCHEMA)


BASE = Variant("tiny-s", "all", "base", 0)
MISALIGNED = Variant("tiny-s", "trivia", "misaligned", 0)


def test_every_sampling_job_has_its_own_seed(quickstart):
    seeds = {
        rule_params.sampling(quickstart, variant, name)["seed"]
        for variant in (BASE, MISALIGNED, Variant("tiny-s", "all", "base", 1))
        for name in quickstart["assessments"]
    }
    assert len(seeds) == 3 * len(quickstart["assessments"])
    assert rule_params.sampling(quickstart, BASE, "harmfulness") == rule_params.sampling(quickstart, BASE, "harmfulness")


def test_sampling_params_hold_the_assessment_length_and_no_speed_keys(quickstart):
    morals = rule_params.sampling(quickstart, BASE, "morals")
    assert morals["max_tokens"] == 64 and morals["n"] == 2
    assert "batch_size" not in morals


def test_an_assessment_may_fix_its_own_temperature(quickstart):
    cooler = {**quickstart, "sampling": {**quickstart["sampling"], "temperature": 0.7}}
    assert rule_params.sampling(cooler, BASE, "harmfulness")["temperature"] == 0.7
    assert rule_params.sampling(cooler, BASE, "freeform")["temperature"] == 1.0  # the schema's default for it


def test_prompt_settings_leave_out_judging_sampling_and_scoring_keys(quickstart):
    for name in quickstart["assessments"]:
        settings = rule_params.prompt_settings(quickstart, name)
        assert not {"judge_prompt", "samples", "max_tokens", "min_mass", "bootstrap", "ci"} & set(settings)
    assert rule_params.prompt_settings(quickstart, "harmfulness") == {"prompts": "results/quickstart/data/quickstart_harmfulness.jsonl"}


def test_recognition_pairing_seed_is_per_variant_and_no_other_key_reaches_its_prompts(quickstart):
    first = rule_params.variant_prompt_settings(quickstart, "recognition", BASE)
    assert first == {"prompts": "resources/recognition/prompts.yaml", "pairs": 1, "seed": first["seed"]}
    assert rule_params.variant_prompt_settings(quickstart, "recognition", MISALIGNED)["seed"] != first["seed"]


def test_score_settings_carry_a_bootstrap_seed_per_variant(quickstart):
    first = rule_params.score_settings(quickstart, "harmfulness", BASE)
    second = rule_params.score_settings(quickstart, "harmfulness", MISALIGNED)
    assert first["bootstrap"] == 200 and first["seed"] != second["seed"]
    assert "samples" not in first and "prompts" not in first


def test_judge_and_backend_params_leave_out_speed_and_resources(paper):
    judge = rule_params.judge(paper)
    assert not {"batch_size", "resources"} & set(judge) and judge["model"] == paper["judge"]["model"]
    assert rule_params.backend_result_settings(paper, "local") == {"dtype": "bfloat16", "vllm": True}
    assert rule_params.backend_result_settings(paper, "openai") == {}
    assert "gradient_checkpointing" not in rule_params.training(paper, "32b", 0)
    assert rule_params.training_speed(paper, "32b") == {"gradient_checkpointing": True, "save_steps": 50, "save_total_limit": 1}


def test_a_judge_that_is_a_model_under_test_is_warned_about(quickstart, paper):
    (warning,) = emconfig.warnings(quickstart)
    assert "judge.model 'results/tinymodels/tiny-s' is the base model of size 'tiny-s'" in warning
    assert emconfig.warnings(paper) == []  # the paper config judges with a model of another family


def test_command_line_overrides_are_read_as_yaml():
    assert emconfig.typed_overrides({"seeds": ["0", "1"], "judge": {"min_mass": "0.5", "name": "x"}}) == {
        "seeds": [0, 1],
        "judge": {"min_mass": 0.5, "name": "x"},
    }


def test_config_overrides_apply_to_the_default_and_to_a_configfile():
    assert dry_run("--forceall", "--config", "seeds=[0,1]")["finetune"] == 24
    quick = dry_run("--forceall", "--configfile", "config/quickstart.yaml", "--config", "seeds=[0,1]")
    assert quick["finetune"] == 4


def test_wildcards_match_configured_values_only():
    for target in (
        "results/quickstart/judgments/tiny-s/all/base/seed0/harmfulness.other-judge.jsonl",
        "results/quickstart/samples/tiny-s/all/base/seed7/harmfulness.jsonl",
        "results/quickstart/samples/huge/all/base/seed0/harmfulness.jsonl",
    ):
        result = snakemake("-n", target, "--configfile", "config/quickstart.yaml", check=False)
        assert result.returncode != 0, target
        assert "No rule to produce" in result.stdout + result.stderr


def test_runs_on_the_workflows_tiny_models_carry_a_warning(quickstart, paper):
    assert "meaningless" in emconfig.toy_note(quickstart)
    assert emconfig.toy_note(paper) is None
