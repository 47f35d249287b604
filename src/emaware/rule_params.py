"""What each rule's params carry: exactly the settings that change its result, nothing else.

Snakemake reruns a job when its params change, so a key that only changes speed, memory, concurrency,
retries, paths of caches or where a file is read from must not be in them: on the paper config each
needless rerun costs GPU-days. Jobs read such execution settings from the validated config at run time
(`snakemake.config`). config/README.md says per key what it reruns; tests/test_e2e.py checks it key by key.
"""

from __future__ import annotations

from typing import Any

from .assessments import ASSESSMENTS
from .config import Variant, assessment_settings, training_hparams
from .seeds import derive_seed

# Backend settings that change what a model computes: the dtype (on a GPU) and the sampler (vLLM or
# transformers). device, batch_size, vllm_args, base_url, concurrency, retries, cache … do not.
BACKEND_RESULT_KEYS = {"local": ("dtype", "vllm"), "openai": ()}
# Training settings that trade speed for memory, or set how often a resumable checkpoint is saved,
# without changing the result.
TRAINING_SPEED_KEYS = ("gradient_checkpointing", "save_steps", "save_total_limit")
# Dataset keys that only describe a source (they reach provenance files and the cost estimate, not data).
DATASET_DESCRIPTIVE_KEYS = ("licence", "source", "mirror", "rows", "tokens")
DATA_RESULT_KEYS = ("max_chars", "max_tokens", "tokenizer")
JUDGE_RESULT_KEYS = ("name", "backend", "model", "top_logprobs", "min_mass")
SAMPLING_RESULT_KEYS = ("temperature", "top_p", "max_tokens")


def _pick(block: dict, keys: tuple[str, ...]) -> dict:
    return {key: block[key] for key in keys if key in block}


def backend_result_settings(config: dict, backend: str) -> dict:
    return _pick(config["backends"].get(backend, {}), BACKEND_RESULT_KEYS.get(backend, ()))


def dataset_spec(config: dict, dataset: str) -> dict:
    spec = config["datasets"][dataset]
    return {key: value for key, value in spec.items() if key not in DATASET_DESCRIPTIVE_KEYS}


def data_checks(config: dict) -> dict:
    return _pick(config["data"], DATA_RESULT_KEYS)


def training(config: dict, size: str, seed: int) -> dict:
    hparams = training_hparams(config, size, seed)
    return {key: value for key, value in hparams.items() if key not in TRAINING_SPEED_KEYS}


def training_speed(config: dict, size: str) -> dict:
    return _pick(training_hparams(config, size, 0), TRAINING_SPEED_KEYS)


def sampling(config: dict, variant: Variant, assessment: str) -> dict:
    """Temperature, nucleus, answer length, samples per prompt, and the job's seed (an assessment's own
    `max_tokens` and `temperature` win over `sampling`'s).

    The seed comes from the variant (whose seed is one of the config's `seeds`) and the assessment, so
    every sampling job has its own stream and two runs of one config draw the same answers.
    """
    spec = config["assessments"][assessment]
    return {
        **_pick(config["sampling"], SAMPLING_RESULT_KEYS),
        **({"max_tokens": spec["max_tokens"]} if spec.get("max_tokens") else {}),
        **_pick(spec, ("temperature",)),  # an assessment whose protocol fixes it (freeform: 1)
        "n": spec["samples"],
        "seed": derive_seed("sample", variant.path, assessment),
    }


def summary_sampling(config: dict, variant: Variant, draw: str) -> dict:
    """How a writer samples its summaries of a draw of articles (the run's `sampling`), and the job's seed."""
    return {**_pick(config["sampling"], SAMPLING_RESULT_KEYS), "n": 1, "seed": derive_seed("summaries", variant.path, draw)}


def judge(config: dict) -> dict:
    return {**_pick(config["judge"], JUDGE_RESULT_KEYS), **backend_result_settings(config, config["judge"]["backend"])}


def prompt_settings(config: dict, assessment: str) -> dict:
    """The settings an assessment's prompts are built from (files resolved), as the assessment declares them,
    and the evaluation condition it is asked under."""
    return _pick(assessment_settings(config, assessment), (*ASSESSMENTS[assessment].prompt_settings, "condition"))


def variant_prompt_settings(config: dict, assessment: str, variant: Variant) -> dict:
    """The prompt settings of an assessment whose prompts are built per variant from other variants' answers,
    and the seed of the variant's draws (which answers are paired)."""
    return {
        **prompt_settings(config, assessment),
        "seed": derive_seed("pairs", assessment_settings(config, assessment).get("seed", 0), variant.path, assessment),
    }


def score_settings(config: dict, assessment: str, variant: Variant) -> dict:
    """The settings an assessment's score reads, and the seed of its bootstrap (one per variant and assessment)."""
    settings = assessment_settings(config, assessment)
    return {
        **_pick(settings, ASSESSMENTS[assessment].score_settings),
        "seed": derive_seed("bootstrap", settings.get("seed", 0), variant.path, assessment),
    }


def execution(config: dict, backend: str) -> dict[str, Any]:
    """Every setting of a backend (result and execution keys), for the job that runs it."""
    return dict(config["backends"].get(backend, {}))
