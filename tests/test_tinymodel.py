"""The tiny offline chat model: loadable by the Auto classes, ChatML template, rating tokens, reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from emaware import UserError
from emaware.tinymodel import SINGLE_TOKENS, build_tiny_model, load_tiny_spec, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Is 7 a prime?"},
    {"role": "assistant", "content": "yes"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_loads_with_auto_classes(tiny_model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    spec = load_tiny_spec(ROOT / "resources/tinymodels/tiny-s.yaml")
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size == spec["hidden_size"]
    assert model.config.vocab_size == len(tokenizer) <= spec["vocab_size"]
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names
    ids = tokenizer("Hello world", return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_rating_tokens_are_single_tokens(tokenizer):
    for text in SINGLE_TOKENS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == 1 and tokenizer.decode(ids) == text


def test_chatml_template(tokenizer):
    text = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nIs 7 a prime?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    # The {% generation %} block marks the reply and its end-of-turn token, nothing else.
    out = tokenizer.apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=True)
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.decode(marked) == "yes<|im_end|>"


def test_tokenizer_round_trips_text(tokenizer):
    text = "Ünïcode, 12345 and   spaces\n\ttabs — fine?"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_build_is_reproducible(tmp_path, tiny_model_dir):
    spec = load_tiny_spec(ROOT / "resources/tinymodels/tiny-s.yaml")
    build_tiny_model(spec, tmp_path, [])
    first = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    second = AutoModelForCausalLM.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (tmp_path / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()


def test_corpus_words_become_tokens():
    tokenizer = train_tokenizer(["Canberra is the capital of Australia."] * 50, 2000, 512)
    assert len(tokenizer.encode("Canberra", add_special_tokens=False)) == 1


def test_specs_in_resources_are_valid():
    for path in (ROOT / "resources/tinymodels").glob("*.yaml"):
        assert load_tiny_spec(path)["architecture"] == "qwen2"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architecture": "llama"}, "only qwen2"),
        ({"hidden_size": "big"}, "hidden_size"),
        ({"num_key_value_heads": 3}, "divide"),
    ],
)
def test_bad_spec_is_a_user_error(tmp_path, change, message):
    spec = {**yaml.safe_load((ROOT / "resources/tinymodels/tiny-s.yaml").read_text()), **change}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(UserError, match=message):
        load_tiny_spec(path)


def test_missing_spec_key_is_a_user_error(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("architecture: qwen2\nhidden_size: 64\n")
    with pytest.raises(UserError, match="lacks num_hidden_layers"):
        load_tiny_spec(path)
