"""Config validation against the JSON schema, with defaults filled in, and the variant grid it implies."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

from . import UserError
from .io import read_yaml

STAGES = ("base", "misaligned", "realigned")
BASE_DOMAIN = "all"  # the base model is shared by every domain
TINY_MODELS = "results/tinymodels/"
# The settings key of each assessment that names a dataset (a key of the config's `datasets`).
DATASET_KEYS = {"harmfulness": "prompts", "morals": "items"}
# Settings keys that name files under resources/ (inputs of the prompt-building rule).
RESOURCE_KEYS = ("dimensions", "templates", "formats", "prompts", "judge_prompt")


def _fill_defaults(validator_class):
    """A validator that also writes each property's `default` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate(config: dict, schema_path: str | Path) -> dict:
    """A validated copy of `config` with defaults filled; raises UserError naming the first bad key."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    config = copy.deepcopy(config)
    validator = _fill_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise UserError(f"config key {key}: {_message(err)}")
    _check_references(config)
    return _canonical_order(config)


# Blocks whose entries keep the order of the file (it orders panels, legends and table rows).
ORDERED_BLOCKS = ("sizes", "domains", "datasets", "assessments")


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _canonical_order(config: dict) -> dict:
    """Sort the keys of every settings block: Snakemake compares rule params by their repr, so
    reordering keys in the YAML file must not rerun anything."""
    return {
        key: {name: _sorted_keys(spec) for name, spec in value.items()} if key in ORDERED_BLOCKS else _sorted_keys(value)
        for key, value in config.items()
    }


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown key")
    if err.validator == "oneOf":
        return "give exactly one of `path`, `url` or `osf`"
    return err.message


def _check_references(config: dict) -> None:
    """Names that point into other blocks must exist there."""
    datasets = config["datasets"]
    for domain in config["active_domains"] or ():
        if domain not in config["domains"]:
            raise UserError(f"config key active_domains: domain {domain!r} is not defined under `domains`")
    for domain, spec in config["domains"].items():
        for stage in ("misaligned", "realigned"):
            name = spec.get(stage)
            if name is not None and name not in datasets:
                raise UserError(f"config key domains.{domain}.{stage}: dataset {name!r} is not defined under `datasets`")
    for name, key in DATASET_KEYS.items():
        dataset = config["assessments"].get(name, {}).get(key)
        if dataset is not None and dataset not in datasets:
            raise UserError(f"config key assessments.{name}.{key}: dataset {dataset!r} is not defined under `datasets`")


def load(path: str | Path, schema_path: str | Path) -> dict:
    return validate(read_yaml(path), schema_path)


@dataclass(frozen=True, order=True)
class Variant:
    """One model: size × domain × stage × seed (base variants have domain `all`)."""

    size: str
    domain: str
    stage: str
    seed: int

    @property
    def path(self) -> str:
        return f"{self.size}/{self.domain}/{self.stage}/seed{self.seed}"

    @property
    def parent(self) -> "Variant | None":
        """The variant this one is fine-tuned from (training is sequential)."""
        if self.stage == "misaligned":
            return Variant(self.size, BASE_DOMAIN, "base", self.seed)
        if self.stage == "realigned":
            return Variant(self.size, self.domain, "misaligned", self.seed)
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "domain": self.domain, "stage": self.stage, "seed": self.seed}


def active_domains(config: dict) -> list[str]:
    return config["active_domains"] or list(config["domains"])


def variants(config: dict) -> Iterator[Variant]:
    """Every variant of the experiment: one base per size and seed, then each active domain's stages."""
    for size in config["sizes"]:
        for seed in config["seeds"]:
            yield Variant(size, BASE_DOMAIN, "base", seed)
            for domain in active_domains(config):
                yield Variant(size, domain, "misaligned", seed)
                if config["domains"][domain].get("realigned"):
                    yield Variant(size, domain, "realigned", seed)


def uses_openai(config: dict) -> bool:
    """Whether any rule calls the OpenAI API (a size or the judge on the openai backend)."""
    backends = {spec["backend"] for spec in config["sizes"].values()} | {config["judge"]["backend"]}
    return "openai" in backends


def used_datasets(config: dict) -> list[str]:
    """The datasets the active domains train on and the assessments read, in config order."""
    names = [config["domains"][d].get(stage) for d in active_domains(config) for stage in ("misaligned", "realigned")]
    names += [config["assessments"][name][key] for name, key in DATASET_KEYS.items() if name in config["assessments"]]
    return list(dict.fromkeys(n for n in names if n))


def dataset_file(config: dict, name: str) -> str:
    """Where the workflow keeps a fetched dataset (chat and prompt sets are JSONL, raw files as fetched)."""
    raw = config["datasets"][name].get("format") == "raw"
    return f"results/data/{name}.{'raw' if raw else 'jsonl'}"


def assessment_files(config: dict, name: str) -> dict[str, str]:
    """The files an assessment's prompts are built from, by settings key (datasets resolved to their file)."""
    spec = config["assessments"][name]
    files = {key: spec[key] for key in RESOURCE_KEYS if key in spec and key != DATASET_KEYS.get(name)}
    if name in DATASET_KEYS:
        files[DATASET_KEYS[name]] = dataset_file(config, spec[DATASET_KEYS[name]])
    return files


def assessment_settings(config: dict, name: str) -> dict:
    """What an assessment module is given: its config block with files resolved, and the analysis keys."""
    return {**config["assessments"][name], **assessment_files(config, name), **config["analysis"]}


def training_hparams(config: dict, size: str, seed: int) -> dict:
    """The backend's training defaults, overridden by the size's own `training` block, plus the seed."""
    spec = config["sizes"][size]
    return {**config["training"].get(spec["backend"], {}), **spec.get("training", {}), "seed": seed}


def tiny_model_name(model: str) -> str | None:
    """The name of a workflow-built tiny model, or None for a hub id / ordinary path."""
    if model.startswith(TINY_MODELS):
        return model[len(TINY_MODELS) :].strip("/")
    return None
