"""Fine-tuning recipes: the chain of fine-tunes behind each variant, declared in config (`stages`).

Every stage but `base` (the size's untouched model) names its parent stage and what it trains on: a
domain's role (`misaligned` or `realigned`: that domain's dataset), a dataset of the config, or a derived
set built from a model's own outputs (`derived`). A stage whose chain trains on a domain's role exists
once per active domain that has that role's dataset; any other stage is shared by every domain, as
`base` is (domain `all`). The default recipe is base → misaligned → realigned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from . import UserError

BASE_STAGE = "base"
BASE_DOMAIN = "all"  # the domain of a variant whose chain trains on no domain (the base model, say)
ROLES = ("misaligned", "realigned")  # the dataset keys of a domain


@dataclass(frozen=True, order=True)
class Variant:
    """One model: size × domain × stage × seed (a stage shared by every domain has domain `all`)."""

    size: str
    domain: str
    stage: str
    seed: int

    @property
    def path(self) -> str:
        return f"{self.size}/{self.domain}/{self.stage}/seed{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "domain": self.domain, "stage": self.stage, "seed": self.seed}


def chain(stages: dict, stage: str) -> list[str]:
    """The stages from `base` to `stage`, in training order."""
    names = [stage]
    while stages[names[0]].get("parent") is not None:
        names.insert(0, stages[names[0]]["parent"])
    return names


def chains(stages: dict) -> list[list[str]]:
    """Every chain from `base` to a stage that no other stage trains from, in config order."""
    parents = {spec.get("parent") for spec in stages.values()}
    return [chain(stages, stage) for stage in stages if stage not in parents]


def check(config: dict) -> None:
    """`base` is the one stage without a parent; every other stage has a known parent, no cycle, and
    names what it trains on (a dataset of format chat, a derived set of the config)."""
    stages = config["stages"]
    if BASE_STAGE not in stages or stages[BASE_STAGE]:
        raise UserError("config key stages.base: the recipe starts from `base: {}`, the size's untouched model")
    for name, spec in stages.items():
        if name == BASE_STAGE:
            continue
        for key in ("parent", "train"):
            if key not in spec:
                raise UserError(f"config key stages.{name}.{key}: a fine-tuned stage needs a {key}")
        seen = [name]
        while (parent := stages[seen[-1]].get("parent")) is not None:
            if parent not in stages:
                raise UserError(f"config key stages.{seen[-1]}.parent: {parent!r} is not a stage of `stages`")
            if parent in seen:
                raise UserError(f"config key stages.{name}.parent: the parents form a cycle ({' → '.join([*seen, parent])})")
            seen.append(parent)
        train = spec["train"]
        if "derived" in train and train["derived"] not in config["derived"]:
            raise UserError(f"config key stages.{name}.train.derived: {train['derived']!r} is not a set under `derived`")
        writer = train.get("writer", "parent")
        if writer != "parent" and writer not in chain(stages, name)[:-1]:
            raise UserError(f"config key stages.{name}.train.writer: {writer!r} is not a stage this one is trained from")


def roles(stages: dict, stage: str) -> list[str]:
    """The domain roles trained on along the chain to `stage` (none: the stage is shared by every domain)."""
    return [stages[s]["train"]["role"] for s in chain(stages, stage) if "role" in stages[s].get("train", {})]


def stage_domains(config: dict, stage: str, domains: list[str]) -> list[str]:
    """The domains of `domains` a stage exists for: [BASE_DOMAIN] for a shared stage, else those with a
    dataset for every role its chain trains on."""
    needed = roles(config["stages"], stage)
    if not needed:
        return [BASE_DOMAIN]
    return [d for d in domains if all(config["domains"][d].get(role) for role in needed)]


def variants(config: dict, domains: list[str]) -> Iterator[Variant]:
    """Every variant, per size and seed: the shared stages, then each domain's stages (config order)."""
    shared = [s for s in config["stages"] if not roles(config["stages"], s)]
    for size in config["sizes"]:
        for seed in config["seeds"]:
            for stage in shared:
                yield Variant(size, BASE_DOMAIN, stage, seed)
            for domain in domains:
                for stage in config["stages"]:
                    if stage not in shared and domain in stage_domains(config, stage, [domain]):
                        yield Variant(size, domain, stage, seed)


def parent_of(config: dict, variant: Variant) -> Variant | None:
    """The variant `variant` is fine-tuned from (None for a base variant)."""
    stages = config["stages"]
    parent = stages[variant.stage].get("parent")
    if parent is None:
        return None
    domain = variant.domain if roles(stages, parent) else BASE_DOMAIN
    return Variant(variant.size, domain, parent, variant.seed)


def writer_of(config: dict, variant: Variant) -> Variant:
    """The variant whose own outputs a derived training set of `variant`'s stage is built from."""
    writer = config["stages"][variant.stage]["train"].get("writer", "parent")
    ancestor = parent_of(config, variant)
    while writer != "parent" and ancestor.stage != writer:
        ancestor = parent_of(config, ancestor)
    return ancestor
