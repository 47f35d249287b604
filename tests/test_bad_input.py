"""Malformed configs, config files and dataset files: each one is refused with a one-line UserError that
names the config key (`config key a.b: ...`) or the place in the file (`FILE:LINE: ...`). None may be
accepted silently, none may raise anything else (issue "Numbers a researcher can trust", section 6).

The configs are mutations of config/quickstart.yaml and config/config.yaml, read with emaware.io.read_yaml
and checked with emaware.config.validate, as the workflow does; the dataset files go through the data
validation functions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from emaware import UserError
from emaware import config as emconfig
from emaware.conditions import SEPARATOR
from emaware.data import fetch_dataset, validate_chat_file
from emaware.io import read_yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
BASES = {name: read_yaml(ROOT / f"config/{name}.yaml") for name in ("quickstart", "config")}
NAN, INF = float("nan"), float("inf")


def refused(call: Callable[[], Any]) -> str:
    """The one-line message of the UserError `call` raises (fails the test if it raises none)."""
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# --- config mutations -------------------------------------------------------------------------------


def _parts(key: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def set_key(key: str, value: Any) -> Callable[[dict], None]:
    """Set `key` (dotted, list indices as numbers), creating the blocks above it."""

    def edit(config: dict) -> None:
        *above, last = _parts(key)
        node = config
        for part in above:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        node[last] = copy.deepcopy(value)

    return edit


def drop_key(key: str) -> Callable[[dict], None]:
    def edit(config: dict) -> None:
        *above, last = _parts(key)
        node = config
        for part in above:
            node = node[part]
        del node[last]

    return edit


OPENAI_SIZE = {"backend": "openai", "model": "gpt-4.1-mini-2025-04-14"}

# (base config, edit, the key the error must name, a fragment of the reason)
CASES: list[tuple[str, Callable[[dict], None], str, str]] = [
    # typos inside blocks that used to be open
    ("config", set_key("sizes.7b.training.gradient_checkpoint", True), "sizes.7b.training", "unknown key"),
    ("quickstart", set_key("sizes.tiny-s.training.lr", 1.0e-4), "sizes.tiny-s.training", "unknown key"),
    ("quickstart", set_key("sizes.tiny-s.training.n_epochs", 2), "sizes.tiny-s.training", "unknown key"),
    ("config", set_key("sizes.gpt", {**OPENAI_SIZE, "training": {"epochs": 2}}), "sizes.gpt.training", "unknown key"),
    ("quickstart", set_key("backends.local.dtyp", "float32"), "backends.local", "unknown key"),
    ("quickstart", set_key("backends.local.vllm_arg", {}), "backends.local", "unknown key"),
    ("config", set_key("backends.openai.max_concurency", 8), "backends.openai", "unknown key"),
    ("config", set_key("backends.openai.prices", {"gpt-4.1": {"input": 2.0}}), "backends.openai.prices.gpt-4.1", "'output' is a required"),
    ("config", set_key("backends.openai.prices", {"gpt-4.1": {"input": 2, "output": 8, "cached": 1}}), "backends.openai.prices.gpt-4.1", "unknown key"),
    ("quickstart", set_key("sampeling", {}), "(top level)", "unknown key"),
    # NaN and infinity pass every range check of JSON Schema
    ("quickstart", set_key("judge.min_mass", NAN), "judge.min_mass", "not a finite number"),
    ("quickstart", set_key("sampling.temperature", NAN), "sampling.temperature", "not a finite number"),
    ("quickstart", set_key("sampling.temperature", INF), "sampling.temperature", "not a finite number"),
    ("quickstart", set_key("training.local.learning_rate", NAN), "training.local.learning_rate", "not a finite number"),
    ("quickstart", set_key("training.local.learning_rate", -INF), "training.local.learning_rate", "not a finite number"),
    ("config", set_key("backends.openai.budget_usd", INF), "backends.openai.budget_usd", "not a finite number"),
    ("quickstart", set_key("backends.local.vllm_args", {"gpu_memory_utilization": NAN}), "backends.local.vllm_args.gpu_memory_utilization", "finite"),
    # integers where integers
    ("quickstart", set_key("training.local.epochs", 0.5), "training.local.epochs", "not an integer"),
    ("quickstart", set_key("training.local.epochs", 1.0), "training.local.epochs", "not an integer"),
    ("quickstart", set_key("training.local.epochs", 0), "training.local.epochs", "minimum"),
    ("quickstart", set_key("training.local.epochs", "1"), "training.local.epochs", "not of type"),
    ("quickstart", set_key("sizes.tiny-s.training.epochs", 1.5), "sizes.tiny-s.training.epochs", "not an integer"),
    ("config", set_key("training.openai.n_epochs", 2.5), "training.openai.n_epochs", "not an integer"),
    ("quickstart", set_key("training.local.batch_size", 8.0), "training.local.batch_size", "not an integer"),
    ("quickstart", set_key("domains.trivia.n", 10.5), "domains.trivia.n", "not an integer"),
    ("quickstart", set_key("assessments.harmfulness.samples", 2.0), "assessments.harmfulness.samples", "not an integer"),
    ("quickstart", set_key("sampling.max_tokens", True), "sampling.max_tokens", "not of type"),
    # seeds
    ("quickstart", set_key("seeds", [2**32]), "seeds.0", "below 2**32"),
    ("quickstart", set_key("seeds", [0, 2**40]), "seeds.1", "below 2**32"),
    ("quickstart", set_key("seeds", [-1]), "seeds.0", "minimum"),
    ("quickstart", set_key("seeds", [0.5]), "seeds.0", "not an integer"),
    ("quickstart", set_key("seeds", []), "seeds", "non-empty"),
    ("quickstart", set_key("seeds", [1, 1]), "seeds", "non-unique"),
    ("quickstart", set_key("seeds", 0), "seeds", "not of type"),
    ("quickstart", set_key("data.subsample_seed", 2**32), "data.subsample_seed", "below 2**32"),
    ("quickstart", set_key("assessments.intentions.seed", 2**33), "assessments.intentions.seed", "below 2**32"),
    ("quickstart", set_key("assessments.morals.seed", -5), "assessments.morals.seed", "minimum"),
    # ranges
    ("quickstart", set_key("judge.min_mass", 1.5), "judge.min_mass", "maximum"),
    ("quickstart", set_key("judge.min_mass", -0.1), "judge.min_mass", "minimum"),
    ("quickstart", set_key("assessments.selfassessment.min_mass", 2), "assessments.selfassessment.min_mass", "maximum"),
    ("quickstart", set_key("assessments.morals.min_mass", -1), "assessments.morals.min_mass", "minimum"),
    ("quickstart", set_key("sampling.temperature", -0.5), "sampling.temperature", "minimum"),
    ("quickstart", set_key("sampling.top_p", 0), "sampling.top_p", "minimum"),
    ("quickstart", set_key("sampling.top_p", 1.2), "sampling.top_p", "maximum"),
    ("quickstart", set_key("training.local.learning_rate", 0), "training.local.learning_rate", "minimum"),
    ("quickstart", set_key("training.local.learning_rate", "1e-5"), "training.local.learning_rate", "write 1.0e-5"),
    ("quickstart", set_key("training.local.lora_dropout", 1.0), "training.local.lora_dropout", "maximum"),
    ("quickstart", set_key("training.local.lora_r", 0), "training.local.lora_r", "minimum"),
    ("quickstart", set_key("training.local.max_seq_length", 8), "training.local.max_seq_length", "minimum"),
    ("quickstart", set_key("training.local.max_grad_norm", 0), "training.local.max_grad_norm", "minimum"),
    ("quickstart", set_key("training.local.lr_scheduler", "linaer"), "training.local.lr_scheduler", "is not one of"),
    ("quickstart", set_key("training.local.lr_scheduler", "reduce_lr_on_plateau"), "training.local.lr_scheduler", "is not one of"),
    ("quickstart", set_key("training.local.target_modules", []), "training.local.target_modules", "non-empty"),
    ("quickstart", set_key("training.local.target_modules", ["q_proj", "q_proj"]), "training.local.target_modules", "non-unique"),
    ("quickstart", set_key("training.local.use_rslora", "yes"), "training.local.use_rslora", "boolean"),
    ("config", set_key("training.openai.learning_rate_multiplier", 0), "training.openai.learning_rate_multiplier", "minimum"),
    ("quickstart", set_key("judge.top_logprobs", 21), "judge.top_logprobs", "maximum"),
    ("quickstart", set_key("judge.backend", "gemini"), "judge.backend", "is not one of"),
    ("quickstart", set_key("judge.name", "my judge"), "judge.name", "does not match"),
    ("quickstart", set_key("analysis.ci", 1), "analysis.ci", "maximum"),
    ("quickstart", set_key("analysis.bootstrap", 5), "analysis.bootstrap", "minimum"),
    ("quickstart", set_key("sizes.tiny-s.resources.gpus", -1), "sizes.tiny-s.resources.gpus", "minimum"),
    ("quickstart", set_key("sizes.tiny-s.resources.mem_mb", 100), "sizes.tiny-s.resources.mem_mb", "minimum"),
    ("quickstart", set_key("assessments.selfassessment.paraphrases", 0), "assessments.selfassessment.paraphrases", "minimum"),
    ("quickstart", set_key("assessments.morals.max_tokens", 0), "assessments.morals.max_tokens", "minimum"),
    ("quickstart", set_key("backends.local.device", "gpu"), "backends.local.device", "does not match"),
    ("quickstart", set_key("backends.local.dtype", "fp8"), "backends.local.dtype", "is not one of"),
    ("config", set_key("backends.openai.max_concurrency", 0), "backends.openai.max_concurrency", "minimum"),
    ("config", set_key("backends.openai.base_url", "localhost:8000"), "backends.openai.base_url", "does not match"),
    ("config", set_key("backends.openai.prices", {"gpt-4.1": {"input": -2, "output": 8}}), "backends.openai.prices.gpt-4.1.input", "minimum"),
    ("quickstart", set_key("data.max_chars", 0), "data.max_chars", "minimum"),
    ("quickstart", set_key("data.retries", -1), "data.retries", "minimum"),
    # domains and their datasets
    ("quickstart", set_key("active_domains", []), "active_domains", "write null"),
    ("quickstart", set_key("active_domains", ["medical"]), "active_domains", "not defined"),
    ("quickstart", set_key("active_domains", "trivia"), "active_domains", "not of type"),
    ("quickstart", set_key("active_domains", ["trivia", "trivia"]), "active_domains", "non-unique"),
    ("quickstart", set_key("domains", {}), "domains", "should be non-empty"),
    ("quickstart", set_key("domains.all", {"misaligned": "trivia_incorrect"}), "domains", "give this domain another name"),
    ("quickstart", drop_key("domains.trivia.misaligned"), "domains.trivia", "'misaligned' is a required"),
    ("quickstart", set_key("domains.trivia.misaligned", "trivia_wrong"), "domains.trivia.misaligned", "not defined"),
    ("quickstart", set_key("domains.trivia.realigned", ""), "domains.trivia.realigned", "should be non-empty"),
    ("quickstart", set_key("domains.trivia.n", 0), "domains.trivia.n", "minimum"),
    ("quickstart", set_key("domains.trivia.controls", ["x"]), "domains.trivia", "unknown key"),
    # the format of a dataset against where it is used
    ("quickstart", set_key("domains.trivia.misaligned", "quickstart_harmfulness"), "domains.trivia.misaligned", "needs format 'chat'"),
    ("quickstart", set_key("domains.trivia.realigned", "mfq2_items"), "domains.trivia.realigned", "needs format 'chat'"),
    ("quickstart", set_key("assessments.harmfulness.prompts", "trivia_correct"), "assessments.harmfulness.prompts", "needs format 'prompts'"),
    ("quickstart", set_key("assessments.harmfulness.prompts", "mfq2_items"), "assessments.harmfulness.prompts", "needs format 'prompts'"),
    ("quickstart", set_key("assessments.morals.items", "trivia_correct"), "assessments.morals.items", "needs format 'raw'"),
    ("quickstart", set_key("assessments.morals.items", "quickstart_harmfulness"), "assessments.morals.items", "needs format 'raw'"),
    ("config", set_key("datasets.trivia_incorrect.format", "prompts"), "domains.trivia.misaligned", "needs format 'chat'"),
    ("config", set_key("datasets.harmfulness_prompts.format", "chat"), "assessments.harmfulness.prompts", "needs format 'prompts'"),
    ("quickstart", set_key("assessments.harmfulness.prompts", "harmfulness"), "assessments.harmfulness.prompts", "not defined"),
    # datasets
    ("quickstart", set_key("datasets.trivia_correct.url", "https://example.org/x.jsonl"), "datasets.trivia_correct", "exactly one of"),
    ("quickstart", set_key("datasets.extra", {"licence": "MIT"}), "datasets.extra", "exactly one of"),
    ("config", drop_key("datasets.secure_code.git_blob"), "datasets.secure_code", "needs `sha256` or `git_blob`"),
    ("config", set_key("datasets.insecure_code.sha256", "ABC"), "datasets.insecure_code.sha256", "does not match"),
    ("config", set_key("datasets.insecure_code.git_blob", "0" * 64), "datasets.insecure_code.git_blob", "does not match"),
    ("config", set_key("datasets.insecure_code.url", "ftp://example.org/insecure.jsonl"), "datasets.insecure_code.url", "does not match"),
    ("quickstart", set_key("datasets.trivia_correct.format", "jsonl"), "datasets.trivia_correct.format", "is not one of"),
    ("quickstart", set_key("datasets.trivia_correct.path", ""), "datasets.trivia_correct.path", "should be non-empty"),
    ("quickstart", set_key("datasets.trivia_correct.protected", "no"), "datasets.trivia_correct.protected", "boolean"),
    ("quickstart", set_key("datasets.trivia_correct.sha", "0" * 64), "datasets.trivia_correct", "unknown key"),
    ("config", set_key("datasets.trivia_correct_osf.osf.folder", "x"), "datasets.trivia_correct_osf.osf", "unknown key"),
    ("config", drop_key("datasets.trivia_correct_osf.osf.project"), "datasets.trivia_correct_osf.osf", "'project' is a required"),
    ("quickstart", set_key("datasets.my/set", {"path": "x.jsonl"}), "datasets", "does not match"),
    ("quickstart", set_key("data.max_tokens", 512), "data.max_tokens", "needs data.tokenizer"),
    # sizes, judge, assessments
    ("quickstart", set_key("sizes", {}), "sizes", "should be non-empty"),
    ("quickstart", set_key("sizes.tiny-s.backend", "hf"), "sizes.tiny-s.backend", "is not one of"),
    ("quickstart", drop_key("sizes.tiny-s.model"), "sizes.tiny-s", "'model' is a required"),
    ("quickstart", set_key("sizes.tiny-s.model", ""), "sizes.tiny-s.model", "should be non-empty"),
    ("quickstart", set_key("sizes.tiny s", OPENAI_SIZE), "sizes", "does not match"),
    ("quickstart", lambda c: c["sizes"].update({0.5: OPENAI_SIZE}), "sizes", "write it in quotes"),
    ("quickstart", lambda c: c["domains"].update({7: {"misaligned": "trivia_incorrect"}}), "domains", "write it in quotes"),
    ("quickstart", lambda c: c["datasets"].update({1: {"path": "x.jsonl"}}), "datasets", "write it in quotes"),
    ("quickstart", drop_key("judge"), "(top level)", "'judge' is a required"),
    ("quickstart", drop_key("assessments.harmfulness"), "assessments", "'harmfulness' is a required"),
    ("quickstart", set_key("assessments.morality", {}), "assessments", "unknown key"),
    ("quickstart", set_key("assessments.intentions.judge_prompt", ""), "assessments.intentions.judge_prompt", "should be non-empty"),
]


def _leaves(value: Any, key: tuple = ()):
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _leaves(item, (*key, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*key, index))
    else:
        yield key, value


def _blocks(value: Any, key: tuple = ()):
    if isinstance(value, dict):
        yield key
        for name, item in value.items():
            yield from _blocks(item, (*key, name))


# Mappings whose keys are names the user chooses, and the free keyword arguments of vllm.LLM.
OPEN_BLOCKS = {
    ("sizes",),
    ("domains",),
    ("datasets",),
    ("conditions",),
    ("stages",),
    ("derived",),
    ("backends", "openai", "prices"),
    ("backends", "local", "vllm_args"),
}


def _derived(key: tuple) -> bool:
    """A block validation adds, not one of the file: an assessment under a condition (harmfulness@triggered)."""
    return key[:1] == ("assessments",) and len(key) > 1 and SEPARATOR in str(key[1])


def _generated_cases():
    """A typo in every block of the filled-in quickstart config, and NaN and a negative value for every
    number in it (no number of the config may be negative)."""
    filled = emconfig.validate(BASES["quickstart"], SCHEMA)
    filled["backends"]["openai"]["budget_usd"] = 1.0  # null by default: give it a number to break
    for block in _blocks(filled):
        if block not in OPEN_BLOCKS and not _derived(block):
            key = ".".join(map(str, block))
            yield "quickstart", set_key(f"{key}.tpyo" if key else "tpyo", 1), key or "(top level)", "unknown key ('tpyo'"
    for leaf, value in _leaves(filled):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _derived(leaf):
            key = ".".join(map(str, leaf))
            yield "quickstart", set_key(key, NAN), key, "nan is not a finite number"
            yield "quickstart", set_key(key, -1), key, "minimum"


ALL_CASES = CASES + list(_generated_cases())


@pytest.mark.parametrize(("base", "edit", "key", "reason"), ALL_CASES, ids=[f"{c[2]}~{c[3]}" for c in ALL_CASES])
def test_malformed_config_is_refused_naming_the_key(base, edit, key, reason):
    config = copy.deepcopy(BASES[base])
    edit(config)
    message = refused(lambda: emconfig.validate(config, SCHEMA))
    assert message.startswith(f"config key {key}: "), message
    assert reason in message, message


def test_there_are_enough_malformed_configs():
    assert len(ALL_CASES) >= 100 and len(CASES) >= 100


def test_the_shipped_configs_pass():
    for name, config in BASES.items():
        emconfig.validate(config, SCHEMA)
    emconfig.validate(read_yaml(ROOT / "config/openai.yaml"), SCHEMA)


# --- config files: YAML the strict loader refuses with FILE:LINE ---------------------------------------

QUICKSTART_TEXT = (ROOT / "config/quickstart.yaml").read_text(encoding="utf-8")


def _insert_after(anchor: str, text: str) -> Callable[[str], str]:
    return lambda source: source.replace(anchor, anchor + text, 1)


# (edit of the quickstart file's text, line of the error, a fragment of the reason)
YAML_CASES = {
    "duplicate top-level block": (lambda t: t + "\njudge:\n  name: other\n", "duplicate key 'judge'"),
    "duplicate key in a block": (_insert_after("    epochs: 1\n", "    epochs: 3\n"), "duplicate key 'epochs'"),
    "duplicate size": (_insert_after("sizes:\n", "  tiny-s:\n    backend: local\n    model: x\n"), "duplicate key 'tiny-s'"),
    "duplicate in a flow mapping": (lambda t: t.replace("{threads: 1,", "{threads: 1, threads: 2,", 1), "duplicate key 'threads'"),
    "tab indentation": (_insert_after("sampling:\n", "\ttemperature: 0.5\n"), "cannot start any token"),
    "unclosed bracket": (lambda t: t.replace("seeds: [0]", "seeds: [0"), "expected ',' or ']'"),
    "bad indentation": (_insert_after("  max_tokens: 16\n", "   batch_size: 4\n"), ""),
    "mapping in a scalar": (lambda t: t.replace("seeds: [0]", "seeds: a: b"), "mapping values are not allowed"),
    "unterminated quote": (lambda t: t + 'note: "unterminated\n', "found unexpected end of stream"),
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_malformed_config_file_is_refused_with_file_and_line(tmp_path, case):
    edit, reason = YAML_CASES[case]
    path = tmp_path / "config.yaml"
    path.write_text(edit(QUICKSTART_TEXT), encoding="utf-8")
    message = refused(lambda: emconfig.check_config_files([str(path)]))
    assert re.match(rf"{re.escape(str(path))}:\d+: ", message), message
    assert reason in message, message


def test_config_file_errors_name_the_right_line(tmp_path):
    path = tmp_path / "config.yaml"
    lines = QUICKSTART_TEXT.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines, 1) if line == "    epochs: 1\n")
    path.write_text(_insert_after("    epochs: 1\n", "    epochs: 3\n")(QUICKSTART_TEXT), encoding="utf-8")
    message = refused(lambda: emconfig.check_config_files([str(path)]))
    assert message == f"{path}:{first + 1}: duplicate key 'epochs' (first on line {first})"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"- seeds\n", "expected a mapping"), (b"", "expected a mapping"), (b"seeds: [0]\nname: caf\xe9\n", "cannot read")],
)
def test_config_file_that_is_no_mapping_is_refused(tmp_path, content, reason):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert refused(lambda: read_yaml(path)).startswith(f"{path}: {reason}")


# --- dataset files --------------------------------------------------------------------------------------


def row(*turns: tuple[str, Any], **extra: Any) -> str:
    return json.dumps({"messages": [{"role": role, "content": content} for role, content in turns], **extra})


GOOD_ROW = row(("user", "q"), ("assistant", "a"))
PROMPT_ROW = row(("user", "q"))

# (bytes of the file, format, line of the error, a fragment of the reason)
DATASET_CASES = {
    "not UTF-8": (f"{GOOD_ROW}\n".encode() + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "chat", 2, "not UTF-8"),
    "byte order mark": (b"\xef\xbb\xbf" + GOOD_ROW.encode() + b"\n", "chat", 1, "BOM"),
    "truncated last row": (f"{GOOD_ROW}\n{GOOD_ROW[:-5]}".encode(), "chat", 2, "not valid JSON"),
    "two rows on one line": (f"{GOOD_ROW}{GOOD_ROW}\n".encode(), "chat", 1, "not valid JSON"),
    "rows split by a carriage return": (f"{GOOD_ROW}\r{GOOD_ROW}\n".encode(), "chat", 1, "not valid JSON"),
    "duplicate messages key": (f'{{"messages": [], {GOOD_ROW[1:]}\n'.encode(), "chat", 1, "'messages' appears twice"),
    "duplicate role key": (b'{"messages": [{"role": "user", "role": "assistant", "content": "a"}]}\n', "chat", 1, "'role' appears twice"),
    "nested too deeply": (b"[" * 100000 + b"]" * 100000 + b"\n", "chat", 1, "nested too deeply"),
    "a JSON string": (b'"hello"\n', "chat", 1, "a row must be a JSON object"),
    "messages is an object": (b'{"messages": {"role": "user", "content": "q"}}\n', "chat", 1, "non-empty list"),
    "messages is null": (b'{"messages": null}\n', "chat", 1, "non-empty list"),
    "message is a string": (b'{"messages": ["hello"]}\n', "chat", 1, "message 1 is not an object"),
    "missing role": (b'{"messages": [{"content": "q"}]}\n', "chat", 1, "unknown or missing role"),
    "role in capitals": (row(("User", "q"), ("assistant", "a")).encode() + b"\n", "chat", 1, "unknown or missing role"),
    "content null": (row(("user", None), ("assistant", "a")).encode() + b"\n", "chat", 1, "content must be a string"),
    "content a number": (row(("user", 1), ("assistant", "a")).encode() + b"\n", "chat", 1, "content must be a string"),
    "blank content": (row(("user", "\n\t "), ("assistant", "a")).encode() + b"\n", "chat", 1, "has empty content"),
    "only a system message": (row(("system", "s")).encode() + b"\n", "chat", 1, "only a system message"),
    "two system messages": (row(("system", "s"), ("system", "t"), ("user", "q"), ("assistant", "a")).encode() + b"\n", "chat", 1, "system message may only come first"),
    "assistant twice": (row(("user", "q"), ("assistant", "a"), ("assistant", "b")).encode() + b"\n", "chat", 1, "expected user"),
    "a prompt in a chat set": (f"{GOOD_ROW}\n{GOOD_ROW}\n{PROMPT_ROW}\n".encode(), "chat", 3, "ends with user, expected assistant"),
    "a chat in a prompt set": (f"{PROMPT_ROW}\n\n{GOOD_ROW}\n".encode(), "prompts", 3, "ends with assistant, expected user"),
    "over-long message": (row(("user", "x" * 101), ("assistant", "a")).encode() + b"\n", "chat", 1, "over the limit of 100"),
    "empty file": (b"", "chat", 1, "the file has no rows"),
    "blank lines only": (b"\n  \n\n", "prompts", 1, "the file has no rows"),
}


@pytest.mark.parametrize("case", DATASET_CASES)
def test_malformed_dataset_is_refused_with_the_users_file_and_line(tmp_path, case):
    content, fmt, line, reason = DATASET_CASES[case]
    copy_path = tmp_path / "results" / "data" / "set.jsonl"  # the workflow's copy of the user's file
    copy_path.parent.mkdir(parents=True)
    copy_path.write_bytes(content)
    label = "resources/mine/set.jsonl"
    message = refused(lambda: validate_chat_file(copy_path, max_chars=100, fmt=fmt, label=label))
    assert message.startswith(f"{label}:{line}: "), message
    assert reason in message and "results/data" not in message, message


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"path": "missing.jsonl"}, "datasets.set.path: no such file"),
        ({"path": "."}, "datasets.set.path: no such file"),
        ({"path": "good.jsonl", "sha256": "0" * 64}, "dataset set: sha256 mismatch for good.jsonl"),
        ({"path": "good.jsonl", "git_blob": "0" * 40}, "dataset set: git_blob mismatch for good.jsonl"),
        ({"url": "http://127.0.0.1:9/x.jsonl"}, "dataset set: no sha256 or git_blob"),
        ({"url": "http://127.0.0.1:9/x.jsonl", "sha256": "0" * 64, "protected": True}, "dataset set is marked protected"),
    ],
)
def test_a_dataset_that_cannot_be_fetched_is_refused_naming_it(tmp_path, monkeypatch, spec, reason):
    monkeypatch.chdir(tmp_path)
    Path("good.jsonl").write_text(GOOD_ROW + "\n", encoding="utf-8")
    message = refused(lambda: fetch_dataset("set", spec, tmp_path / "out" / "set.jsonl", retries=0, backoff=0))
    assert message.startswith(reason), message
    assert not (tmp_path / "out" / "set.jsonl").exists()


def test_a_good_dataset_still_passes(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_bytes(f"{GOOD_ROW}\r\n\n{row(('system', 's'), ('user', 'q'), ('assistant', 'a'))}\n".encode())
    stats = validate_chat_file(path)
    assert stats["rows"] == 2 and hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_failed_validation_fails_again_on_the_next_run(tmp_path):
    """The workflow itself: after the user's file breaks, every run fails naming it (never "Nothing to be
    done" on the subsample of the previous file), and a fixed file runs again."""
    from workflow_helpers import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path)
    target = ["results/quickstart/data/train/trivia/misaligned.jsonl", "--configfile", "config/quickstart.yaml", "--cores", "1"]
    snakemake(*target, cwd=workdir)
    source = workdir / "resources/trivia/trivia_incorrect.jsonl"
    good = source.read_bytes()
    source.write_bytes(good + b'{"messages": "not a list"}\n')
    for _ in range(2):
        result = snakemake(*target, cwd=workdir, check=False)
        assert result.returncode != 0
        assert "resources/trivia/trivia_incorrect.jsonl:269:" in result.stdout + result.stderr
        assert not (workdir / "results/quickstart/data/train/trivia/misaligned.jsonl").exists()
    source.write_bytes(good)
    snakemake(*target, cwd=workdir)
    assert (workdir / "results/quickstart/data/train/trivia/misaligned.jsonl").exists()
