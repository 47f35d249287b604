"""Config validation against the JSON schema, with defaults filled in, and the variant grid it implies."""

from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema
import yaml

from . import UserError, recipes
from .conditions import assessment_of, evaluation_name
from .io import read_yaml
from .recipes import BASE_DOMAIN, BASE_STAGE, ROLES, Variant, parent_of  # noqa: F401  (BASE_DOMAIN: read as config.BASE_DOMAIN)

TINY_MODELS = "results/tinymodels/"
# The settings keys of each assessment that name its datasets (keys of the config's `datasets`), each one
# name or a list of names; the first is the one a condition's `prompts` replaces.
DATASET_KEYS = {
    "harmfulness": ("prompts",),
    "morals": ("items",),
    "prediction": ("prompts",),
    "freeform": ("questions",),
    "summaries": ("articles",),
    "selfrecognition": ("articles", "others"),
    "truthfulqa": ("questions",),
}
# The `format` each use of a dataset needs: fine-tuning reads chat sets (ending with an assistant
# answer), the harmfulness prompts (and those score prediction asks about) end with a user turn, the
# MFQ-2 items are a CSV file, the free-form questions YAML files.
DATASET_FORMATS = {
    "domains": ("chat", "fine-tuning"),
    "harmfulness": ("prompts", "harmfulness"),
    "prediction": ("prompts", "score prediction"),
    "morals": ("raw", "morals"),
    "freeform": ("raw", "free-form questions"),
    "derived": ("raw", "a derived training set"),
    "summaries": ("raw", "summaries (articles)"),
    "selfrecognition": ("raw", "self-recognition (articles and other sources' summaries)"),
    "truthfulqa": ("raw", "TruthfulQA (its CSV)"),
}
# Text that YAML 1.1 (PyYAML, Snakemake) does not read as a number although it looks like one: 1e-5.
YAML_TEXT_NUMBER = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")
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


def _strict_types(validator_class):
    """Integers are ints: JSON Schema also counts 1.0 as an integer, which `range(epochs)` or a
    seed path would then choke on inside a job."""
    checker = validator_class.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(validator_class, type_checker=checker)


@functools.lru_cache(maxsize=4)
def _validator(schema_path: str):
    return _strict_types(_fill_defaults(jsonschema.Draft202012Validator))(read_yaml(schema_path))


def validate(config: dict, schema_path: str | Path) -> dict:
    """A validated copy of `config` with defaults filled; raises UserError naming the first bad key."""
    config = copy.deepcopy(config)
    for path, value in _non_finite(config):
        raise UserError(f"config key {_key(path)}: {value} is not a finite number")
    validator = _validator(str(Path(schema_path).resolve()))
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        raise UserError(f"config key {_key(err.absolute_path)}: {_message(err)}")
    _fill_prediction_prompts(config["assessments"])
    _fill_shown_articles(config["assessments"])
    _add_conditioned(config)
    _check_references(config)
    return _canonical_order(config)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _non_finite(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, float]]:
    """NaN and ±inf anywhere in the config: JSON Schema's `number` accepts them, and every range
    check passes for NaN (all its comparisons are false), so `.nan` would reach the jobs."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


# Blocks whose entries keep the order of the file (it orders panels, legends and table rows).
ORDERED_BLOCKS = ("sizes", "domains", "datasets", "assessments", "stages")


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
    # A schema may word the error of one of its rules itself: x-messages: {<rule>: "... {value} ..."}.
    custom = err.schema.get("x-messages", {}).get(err.validator) if isinstance(err.schema, dict) else None
    if custom:
        return custom.replace("{value}", repr(err.instance))
    if err.validator == "additionalProperties":
        known = ", ".join(sorted(err.schema.get("properties", {})))
        return err.message.replace("Additional properties are not allowed", "unknown key") + f"; known keys: {known}"
    if err.validator == "oneOf":
        return "give exactly one of `path`, `url` or `osf`"
    if err.validator == "type" and isinstance(err.instance, float) and "integer" in err.validator_value:
        return f"{err.instance!r} is not an integer (write a whole number, without a decimal point)"
    if err.validator == "type" and isinstance(err.instance, str) and YAML_TEXT_NUMBER.fullmatch(err.instance):
        return f"{err.message} (YAML reads a number like 1e-5, without a dot, as text: write 1.0e-5)"
    return err.message


def _fill_prediction_prompts(assessments: dict) -> None:
    """Score prediction asks about the harmfulness prompts unless it names a set of its own; in `overall`
    mode it asks about no prompt, so a set named there would be ignored: refused instead."""
    spec = assessments.get("prediction")
    if spec is None:
        return
    if spec["mode"] == "overall" and spec["prompts"] is not None:
        raise UserError("config key assessments.prediction.prompts: mode 'overall' asks about no prompts; leave the key out")
    if spec["mode"] == "per_prompt" and spec["prompts"] is None:
        spec["prompts"] = assessments["harmfulness"]["prompts"]


def _fill_shown_articles(assessments: dict) -> None:
    """Self-recognition shows the articles its source (the summaries assessment) summarised, unless it names
    a dataset of its own."""
    spec = assessments.get("selfrecognition")
    if spec is None or spec["articles"] is not None:
        return
    source = assessments.get(spec["source"], {})
    if "articles" not in source:
        raise UserError(f"config key assessments.selfrecognition.source: {spec['source']!r} must name the summaries assessment of this config")
    spec["articles"] = source["articles"]


def _add_conditioned(config: dict) -> None:
    """Each assessment's evaluation under each condition it lists, as an entry `<assessment>@<condition>`
    of `assessments` right after its own: its settings, the condition (under `condition`, with its name)
    and the condition's dataset in place of the assessment's."""
    conditions, expanded = config["conditions"], {}
    for name, spec in config["assessments"].items():
        expanded[name] = spec
        for condition in spec.get("conditions", ()):
            key = f"assessments.{name}.conditions"
            if condition not in conditions:
                raise UserError(f"config key {key}: condition {condition!r} is not defined under `conditions`")
            settings = {k: v for k, v in spec.items() if k != "conditions"}
            settings["condition"] = {"name": condition, **conditions[condition]}
            if "prompts" in conditions[condition]:
                prompts = DATASET_KEYS.get(name, ("",))[0]
                if spec.get(prompts) is None:  # e.g. score prediction in `overall` mode
                    raise UserError(f"config key {key}: condition {condition!r} replaces the prompts' dataset; {name} reads none")
                settings[prompts] = shaped_like(spec[prompts], [conditions[condition]["prompts"]])
            expanded[evaluation_name(name, condition)] = settings
    config["assessments"] = expanded


def _check_references(config: dict) -> None:
    """Names that point into other blocks must exist there, and the datasets they name must have the
    format their use needs; settings that only work together must be given together."""
    datasets = config["datasets"]
    for domain in config["active_domains"] or ():
        if domain not in config["domains"]:
            raise UserError(f"config key active_domains: domain {domain!r} is not defined under `domains`")
    for domain, spec in config["domains"].items():
        for role in ROLES:
            if spec.get(role) is not None:
                _check_dataset_use(datasets, f"domains.{domain}.{role}", spec[role], "domains")
    recipes.check(config)
    draws: dict[str, str] = {}
    for name, spec in config["derived"].items():
        for key in ("articles", "other"):
            _check_dataset_use(datasets, f"derived.{name}.{key}", spec[key], "derived")
        if draws.setdefault(summary_draw(spec), spec["prompts"]) != spec["prompts"]:
            raise UserError(
                f"config key derived.{name}.prompts: another set draws the same articles (articles, n, seed) with other"
                " prompts; a writer's summaries of one draw are written once, so give both the same prompts"
            )
    for stage, spec in config["stages"].items():
        if "dataset" in spec.get("train", {}):
            _check_dataset_use(datasets, f"stages.{stage}.train.dataset", spec["train"]["dataset"], "domains")
    for name in config["assessments"]:
        for key in DATASET_KEYS.get(assessment_of(name), ()):
            for dataset in dataset_names(config["assessments"][name].get(key)):
                _check_dataset_use(datasets, _dataset_setting(config, name, key), dataset, assessment_of(name))
    for name, spec in config["assessments"].items():
        source = spec.get("source")  # an assessment that shows other variants' answers of this one
        if source is not None and (source not in config["assessments"] or "source" in config["assessments"][source]):
            raise UserError(
                f"config key assessments.{name}.source: {source!r} must name another assessment of this config,"
                " one whose prompts every variant shares"
            )
    for name, spec in datasets.items():
        if spec.get("url") is not None and not (spec.get("sha256") or spec.get("git_blob")):
            raise UserError(
                f"config key datasets.{name}: a `url` dataset needs `sha256` or `git_blob` (no unverified downloads)"
            )
    if config["data"]["max_tokens"] is not None and config["data"]["tokenizer"] is None:
        raise UserError("config key data.max_tokens: a token limit needs data.tokenizer (a tokenizer id or path)")


def _dataset_setting(config: dict, name: str, key: str) -> str:
    """The config key that names an evaluation's datasets of `key` (its condition's `prompts` where they
    replace them)."""
    condition = config["assessments"][name].get("condition", {})
    if "prompts" in condition and key == DATASET_KEYS[assessment_of(name)][0]:
        return f"conditions.{condition['name']}.prompts"
    return f"assessments.{name}.{key}"


def dataset_names(value: str | list | None) -> list[str]:
    """A setting naming one dataset, a list of them or none, as a list."""
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _check_dataset_use(datasets: dict, key: str, name: str, use: str) -> None:
    if name not in datasets:
        raise UserError(f"config key {key}: dataset {name!r} is not defined under `datasets`")
    (need, purpose), have = DATASET_FORMATS[use], datasets[name]["format"]
    if have != need:
        raise UserError(f"config key {key}: dataset {name!r} has format {have!r}; {purpose} needs format {need!r}")


def load(path: str | Path, schema_path: str | Path) -> dict:
    return validate(read_yaml(path), schema_path)


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Re-read config files with the strict YAML loader: Snakemake's own loader keeps the last of two
    equal keys, so a duplicated block would silently replace the first. Raises `FILE:LINE: ...`."""
    for path in paths:
        read_yaml(path)


def active_domains(config: dict) -> list[str]:
    return config["active_domains"] or list(config["domains"])


def variants(config: dict) -> Iterator[Variant]:
    """Every variant of the experiment: per size and seed the shared stages (base first), then each active
    domain's stages (emaware.recipes)."""
    return recipes.variants(config, active_domains(config))


def other_variants(config: dict, variant: Variant, others: str) -> list[Variant]:
    """The variants whose answers `variant` is shown beside its own (`assessments.<name>.others`): `base`,
    the base variant of its size and seed; `parent`, the variant it was fine-tuned from; `siblings`, every
    other variant of its size and seed. None for a base variant under `base` or `parent`."""
    if others == "siblings":
        return [v for v in variants(config) if (v.size, v.seed) == (variant.size, variant.seed) and v != variant]
    other = parent_of(config, variant) if others == "parent" else Variant(variant.size, BASE_DOMAIN, BASE_STAGE, variant.seed)
    return [other] if other not in (None, variant) else []


def uses_openai(config: dict) -> bool:
    """Whether any rule calls the OpenAI API (a size or the judge on the openai backend)."""
    backends = {spec["backend"] for spec in config["sizes"].values()} | {config["judge"]["backend"]}
    return "openai" in backends


def used_datasets(config: dict) -> list[str]:
    """The datasets the active domains train on and the assessments read, in config order."""
    names = [config["domains"][d].get(role) for d in active_domains(config) for role in ROLES]
    trains = [spec["train"] for spec in config["stages"].values() if "train" in spec]
    names += [train["dataset"] for train in trains if "dataset" in train]
    names += [config["derived"][train["derived"]][key] for train in trains if "derived" in train for key in ("articles", "other")]
    names += [dataset for name in config["assessments"] for dataset in assessment_datasets(config, name)]
    return list(dict.fromkeys(n for n in names if n))


def summary_draw(spec: dict) -> str:
    """The name of a derived set's article draw (`articles`, `n`, `seed`): the sets of one draw share the
    writer's summaries."""
    return f"{spec['articles']}-n{spec['n']}-s{spec['seed']}"


def assessment_datasets(config: dict, name: str) -> list[str]:
    """The datasets assessment `name` reads (its DATASET_KEYS settings, each one name or a list)."""
    spec = config["assessments"][name]
    return [dataset for key in DATASET_KEYS.get(assessment_of(name), ()) for dataset in dataset_names(spec.get(key))]


def results_dir(config: dict) -> str:
    """The run's own results directory: two configs never share (or overwrite) a result file."""
    return f"results/{config['run']}"


def run_name(config: dict, configfiles: list) -> str:
    """`run` from the config, else the name of the last config file read (`my.yaml` → `my`)."""
    return config.get("run") or (Path(str(configfiles[-1])).stem if configfiles else "default")


def dataset_file(config: dict, name: str) -> str:
    """Where the workflow keeps a fetched dataset (chat and prompt sets are JSONL, raw files as fetched)."""
    raw = config["datasets"][name].get("format") == "raw"
    return f"{results_dir(config)}/data/{name}.{'raw' if raw else 'jsonl'}"


def shaped_like(setting: str | list, paths: list[str]) -> str | list[str]:
    """The files of the datasets a setting names, in its shape: a list for a list, else the one file."""
    return paths if isinstance(setting, list) else paths[0]


def assessment_files(config: dict, name: str) -> dict[str, str | list[str]]:
    """The files an assessment's prompts are built from, by settings key (datasets resolved to their file;
    a list of datasets to a list of files)."""
    spec = config["assessments"][name]
    dataset_keys = DATASET_KEYS.get(assessment_of(name), ())
    files = {key: spec[key] for key in RESOURCE_KEYS if key in spec and key not in dataset_keys}
    for key in dataset_keys:
        if spec.get(key) is not None:  # none for score prediction in `overall` mode
            files[key] = shaped_like(spec[key], [dataset_file(config, dataset) for dataset in dataset_names(spec[key])])
    return files


def assessment_settings(config: dict, name: str) -> dict:
    """What an assessment is given: its config block with files resolved, and the analysis keys."""
    return {**config["assessments"][name], **assessment_files(config, name), **config["analysis"]}


def training_hparams(config: dict, size: str, seed: int) -> dict:
    """The backend's training defaults, overridden by the size's own `training` block, plus the seed."""
    spec = config["sizes"][size]
    return {**config["training"].get(spec["backend"], {}), **spec.get("training", {}), "seed": seed}


def toy_note(config: dict) -> str | None:
    """The warning every figure and caption of a run on the workflow's own tiny models carries."""
    if all(tiny_model_name(spec["model"]) for spec in config["sizes"].values()):
        return "Quickstart: tiny random-weight models built by the workflow: these numbers are meaningless"
    return None


def tiny_model_name(model: str) -> str | None:
    """The name of a workflow-built tiny model, or None for a hub id / ordinary path."""
    if model.startswith(TINY_MODELS):
        return model[len(TINY_MODELS) :].strip("/")
    return None


def warnings(config: dict) -> list[str]:
    """One line per setting that is valid but undermines a result (printed when the workflow is parsed)."""
    judge = config["judge"]
    return [
        f"judge.model {judge['model']!r} is the base model of size {size!r}: the judge rates answers of its own"
        " fine-tunes (use a judge that is not a model under test)"
        for size, spec in config["sizes"].items()
        if (spec["backend"], spec["model"]) == (judge["backend"], judge["model"])
    ]


def typed_overrides(overrides: Any) -> Any:
    """`--config KEY=VALUE` values as YAML reads them: Snakemake parses a list or mapping given there
    with YAML's BaseLoader, so `seeds=[0,1]` would otherwise arrive as the strings '0' and '1'."""
    if isinstance(overrides, dict):
        return {key: typed_overrides(value) for key, value in overrides.items()}
    if isinstance(overrides, list):
        return [typed_overrides(item) for item in overrides]
    if isinstance(overrides, str):
        try:
            return yaml.safe_load(overrides)
        except yaml.YAMLError:
            return overrides
    return overrides
