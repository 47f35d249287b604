"""Recipes: stages declared in config, the variants they imply, and the errors of a bad recipe."""

import pytest
import yaml

from emaware import UserError
from emaware import config as emconfig
from emaware.config import Variant
from emaware.recipes import chain, writer_of
from workflow_helpers import ROOT

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def paper(edit=lambda config: None):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    edit(config)
    return emconfig.validate(config, SCHEMA)


def study(config):
    """Prevention and reversal: a shared stage before the domain's misaligned set, and one after it."""
    config["datasets"]["sgtr_pairs"] = {"path": "resources/trivia/trivia_correct.jsonl"}
    config["stages"] = {
        "base": {},
        "sgtr": {"parent": "base", "train": {"dataset": "sgtr_pairs"}},
        "misaligned": {"parent": "base", "train": {"role": "misaligned"}},
        "sgtr_em": {"parent": "sgtr", "train": {"role": "misaligned"}, "system_prompt": "empty"},
        "em_sgtr": {"parent": "misaligned", "train": {"dataset": "sgtr_pairs"}},
        "em_realigned": {"parent": "em_sgtr", "train": {"role": "realigned"}},
    }
    config["sizes"] = {"7b": config["sizes"]["7b"]}


def test_the_default_recipe_is_the_papers():
    config = paper()
    assert list(config["stages"]) == ["base", "misaligned", "realigned"]
    variants = list(emconfig.variants(config))
    assert len(variants) == 15
    assert [v.path for v in variants[:5]] == [
        "0.5b/all/base/seed0",
        "0.5b/trivia/misaligned/seed0",
        "0.5b/trivia/realigned/seed0",
        "0.5b/code/misaligned/seed0",
        "0.5b/code/realigned/seed0",
    ]


def test_shared_stages_once_per_size_and_seed_domain_stages_once_per_domain():
    config = paper(study)
    paths = [v.path for v in emconfig.variants(config)]
    assert paths == [
        "7b/all/base/seed0",
        "7b/all/sgtr/seed0",
        *[f"7b/{domain}/{stage}/seed0" for domain in ("trivia", "code") for stage in ("misaligned", "sgtr_em", "em_sgtr", "em_realigned")],
    ]
    assert emconfig.parent_of(config, Variant("7b", "code", "sgtr_em", 0)) == Variant("7b", "all", "sgtr", 0)
    assert emconfig.parent_of(config, Variant("7b", "code", "em_sgtr", 0)) == Variant("7b", "code", "misaligned", 0)
    assert emconfig.parent_of(config, Variant("7b", "all", "sgtr", 0)) == Variant("7b", "all", "base", 0)
    assert chain(config["stages"], "em_realigned") == ["base", "misaligned", "em_sgtr", "em_realigned"]


def test_a_domain_without_a_role_has_none_of_the_stages_that_train_on_it():
    def no_counterpart(config):
        study(config)
        config["domains"]["code"]["realigned"] = None

    paths = [v.path for v in emconfig.variants(paper(no_counterpart))]
    assert "7b/trivia/em_realigned/seed0" in paths and "7b/code/em_realigned/seed0" not in paths
    assert "7b/code/em_sgtr/seed0" in paths


def test_writer_is_the_parent_or_a_stage_of_the_chain():
    def derived(config):
        study(config)
        config["derived"] = {"pairs": {"kind": "sgtr", "articles": "mfq2_items", "other": "mfq2_items"}}
        config["stages"]["em_sgtr"]["train"] = {"derived": "pairs"}
        config["stages"]["em_realigned"]["train"] = {"derived": "pairs", "writer": "misaligned"}

    config = paper(derived)
    assert writer_of(config, Variant("7b", "code", "em_sgtr", 0)) == Variant("7b", "code", "misaligned", 0)
    assert writer_of(config, Variant("7b", "code", "em_realigned", 0)) == Variant("7b", "code", "misaligned", 0)


def stages(**changes):
    def edit(config):
        study(config)
        config["stages"].update(changes)

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (stages(sgtr={"parent": "nope", "train": {"role": "misaligned"}}), "config key stages.sgtr.parent: 'nope' is not a stage of `stages`"),
        (
            stages(sgtr={"parent": "em_sgtr", "train": {"dataset": "sgtr_pairs"}}, sgtr_em={"parent": "sgtr", "train": {"role": "misaligned"}}, misaligned={"parent": "sgtr_em", "train": {"role": "misaligned"}}),
            "config key stages.sgtr.parent: the parents form a cycle (sgtr → em_sgtr → misaligned → sgtr_em → sgtr)",
        ),
        (stages(sgtr={"parent": "base"}), "config key stages.sgtr.train: a fine-tuned stage needs a train"),
        (stages(sgtr={"train": {"role": "misaligned"}}), "config key stages.sgtr.parent: a fine-tuned stage needs a parent"),
        (stages(base={"parent": "sgtr", "train": {"role": "misaligned"}}), "config key stages.base: the recipe starts from `base: {}`"),
        (stages(sgtr={"parent": "base", "train": {"role": "misaligned", "dataset": "x"}}), "config key stages.sgtr.train: give exactly one of `role`, `dataset` or `derived`"),
        (stages(sgtr={"parent": "base", "train": {"role": "evil"}}), "config key stages.sgtr.train.role: 'evil' is not one of"),
        (stages(sgtr={"parent": "base", "train": {"dataset": "harmfulness_prompts"}}), "config key stages.sgtr.train.dataset: dataset 'harmfulness_prompts' has format 'prompts'"),
        (stages(sgtr={"parent": "base", "train": {"derived": "nope"}}), "config key stages.sgtr.train.derived: 'nope' is not a set under `derived`"),
        (stages(sgtr={"parent": "base", "train": {"dataset": "sgtr_pairs", "writer": "misaligned"}}), "config key stages.sgtr.train.writer: 'misaligned' is not a stage this one is trained from"),
    ],
)
def test_a_bad_recipe_names_the_key(edit, message):
    with pytest.raises(UserError) as err:
        paper(edit)
    assert message in str(err.value)
