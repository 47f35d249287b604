import re

import pytest
import yaml

from emaware import UserError
from emaware import config as emconfig
from workflow_helpers import ROOT

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def paper_config():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_every_shipped_config_validates():
    configs = sorted((ROOT / "config").glob("*.yaml"))
    assert len(configs) >= 8
    for path in configs:
        emconfig.load(path, SCHEMA)


def test_defaults_are_filled():
    config = paper_config()
    del config["judge"]["min_mass"]
    assert emconfig.validate(config, SCHEMA)["judge"]["min_mass"] == 0.25


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("sizes"), "config key (top level): 'sizes' is a required property"),
        (lambda c: c["judge"].update(backend="gemini"), "config key judge.backend: 'gemini' is not one of"),
        (lambda c: c["training"]["local"].update(lr=1), "config key training.local: unknown key ('lr' was unexpected)"),
        (lambda c: c["domains"]["code"].update(misaligned="nope"), "config key domains.code.misaligned: dataset 'nope'"),
        (lambda c: c.update(seeds=[]), "config key seeds:"),
        (lambda c: c["domains"].update(all={"misaligned": "trivia_incorrect"}), "config key domains:"),
        (
            lambda c: c["assessments"].update(prediction={"mode": "overall", "prompts": "harmfulness_prompts"}),
            "config key assessments.prediction.prompts: mode 'overall' asks about no prompts",
        ),
        (
            lambda c: c["assessments"].update(prediction={"prompts": "insecure_code"}),
            "config key assessments.prediction.prompts: dataset 'insecure_code' has format 'chat'; score prediction needs format 'prompts'",
        ),
        (
            lambda c: c["assessments"]["freeform"].update(questions=["betley_first_plot_questions", "trivia_incorrect"]),
            "config key assessments.freeform.questions: dataset 'trivia_incorrect' has format 'chat'; free-form questions needs format 'raw'",
        ),
        (lambda c: c["assessments"]["freeform"].update(questions=["nope"]), "config key assessments.freeform.questions: dataset 'nope'"),
        (lambda c: c["assessments"]["freeform"].update(aligned_operator=">"), "config key assessments.freeform.aligned_operator: '>' is not one of"),
    ],
)
def test_bad_config_names_the_key(edit, message):
    config = paper_config()
    edit(config)
    with pytest.raises(UserError) as err:
        emconfig.validate(config, SCHEMA)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_variants_share_one_base_per_size_and_seed():
    config = emconfig.validate(paper_config(), SCHEMA)
    variants = list(emconfig.variants(config))
    assert len(variants) == 15
    bases = [v for v in variants if v.stage == "base"]
    assert {(v.size, v.domain) for v in bases} == {("0.5b", "all"), ("7b", "all"), ("32b", "all")}
    realigned = emconfig.Variant("7b", "code", "realigned", 0)
    assert emconfig.parent_of(config, realigned) == emconfig.Variant("7b", "code", "misaligned", 0)
    assert emconfig.parent_of(config, emconfig.parent_of(config, realigned)) == emconfig.Variant("7b", "all", "base", 0)
    assert realigned.path == "7b/code/realigned/seed0"


def test_size_training_block_overrides_backend_defaults():
    config = paper_config()
    config["sizes"]["7b"]["training"] = {"learning_rate": 2e-5}
    config = emconfig.validate(config, SCHEMA)
    hparams = emconfig.training_hparams(config, "7b", 3)
    assert hparams["learning_rate"] == 2e-5 and hparams["lora_r"] == 32 and hparams["seed"] == 3
    assert emconfig.training_hparams(config, "0.5b", 3)["learning_rate"] == 1e-5


def test_tiny_model_names():
    assert emconfig.tiny_model_name("results/tinymodels/tiny-s") == "tiny-s"
    assert emconfig.tiny_model_name("Qwen/Qwen2.5-7B-Instruct") is None


def test_reordering_keys_changes_no_setting_block():
    config = paper_config()
    shuffled = {**config, "judge": dict(reversed(list(config["judge"].items())))}
    shuffled["sizes"] = {k: dict(reversed(list(v.items()))) for k, v in config["sizes"].items()}
    first, second = emconfig.validate(config, SCHEMA), emconfig.validate(shuffled, SCHEMA)
    assert repr(first["judge"]) == repr(second["judge"])
    assert repr(first["sizes"]) == repr(second["sizes"])
    assert list(second["sizes"]) == ["0.5b", "7b", "32b"]  # the sizes keep the file's order


def test_size_overrides_get_no_defaults_and_defaults_are_valid():
    config = emconfig.validate(paper_config(), SCHEMA)
    assert config["sizes"]["7b"]["training"] == {"gradient_checkpointing": True}
    assert config["sizes"]["0.5b"]["training"] == {}
    assert emconfig.validate(config, SCHEMA) == config  # the filled-in defaults pass the schema too


def test_training_defaults_fill_a_missing_backend_block():
    config = paper_config()
    del config["training"]["local"]
    hparams = emconfig.training_hparams(emconfig.validate(config, SCHEMA), "0.5b", 0)
    assert (hparams["lora_r"], hparams["epochs"], hparams["lr_scheduler"]) == (32, 1, "linear")


def test_schema_seed_limit_is_the_code_one():
    from emaware.io import read_yaml
    from emaware.seeds import SEED_LIMIT

    assert read_yaml(SCHEMA)["$defs"]["seed"]["maximum"] == SEED_LIMIT - 1


def test_config_files_are_read_strictly(tmp_path):
    emconfig.check_config_files([str(ROOT / "config" / name) for name in ("config.yaml", "quickstart.yaml", "openai.yaml")])
    path = tmp_path / "c.yaml"
    path.write_text("seeds: [0]\ntraining:\n  local: {epochs: 1}\ntraining:\n  openai: {}\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}:4: duplicate key 'training' \(first on line 2\)$"):
        emconfig.check_config_files([str(path)])
