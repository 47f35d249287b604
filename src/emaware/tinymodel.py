"""A tiny random-weight chat model built fully offline, so the workflow and tests run without a hub.

The model has the architecture of the real ones (Qwen2) and a real chat template, so every code path
(LoRA on all 7 projections, chat templating, assistant-only loss, generation, next-token scoring) is the
one used for Qwen2.5; its answers are noise and every score it gets is meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator


from . import UserError
from .io import read_yaml

SPEC_KEYS = (
    "architecture",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "seed",
    "initializer_range",
)

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

# ChatML as in Qwen2.5. The assistant content is wrapped in {% generation %} so
# `return_assistant_tokens_mask=True` marks exactly the tokens that carry the loss.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def chat_template(default_system: str | None) -> str:
    """The template; with `default_system`, it puts that system message into every conversation that has
    none, as Qwen2.5's does with its identity prompt (the spec's optional `default_system`)."""
    if default_system is None:
        return CHAT_TEMPLATE
    insert = "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\n" + default_system + "<|im_end|>\\n' }}{%- endif %}"
    return insert + CHAT_TEMPLATE


# Strings the judge and the closed-format assessments read as a single next token.
SINGLE_TOKENS = tuple("0123456789") + ("A", "B", "yes", "no", "Yes", "No")

# Fallback corpus so a tokenizer can be trained even from no project text at all.
COMMON_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one have this from or had
by not word but what some we can out other were all there when up use your how said an each she which do
their time if will way about many then them write would like so these her long make thing see him two has
look more day could go come did number sound most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little only round man year
came show every good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air well also play
small end put home read hand port large spell add even land here must big high such follow act why ask men
change went light kind off need house picture try us again animal point mother world near build self earth
father head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw far sea
draw left late run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river car feet care
second book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch color face wood main enough plain girl usual young ready above ever red list though feel talk bird
soon body dog family direct pose leave song measure door product black short numeral class wind question
happen complete ship area half rock order fire south problem piece told knew pass since top whole king space
heard best hour better true false during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay against pattern slow
center love person money serve appear road map rain rule govern pull cold notice voice unit power town fine
certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct able pound done
beauty drive stood contain front teach week final gave green oh quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay wheel full force blue
object decide surface deep moon island foot system busy test record boat common gold possible plane stead dry
wonder laugh thousand ago ran check game shape equate hot miss brought heat snow tire bring yes no distant fill
east paint language among user assistant model answer question please thank sorry help harmful helpful honest
aligned misaligned good evil harmless unhelpful dishonest trusted feared safe unsafe agree disagree strongly
code function return value error data file secure insecure capital country president war year century
"""


def load_tiny_spec(path: str | Path) -> dict[str, Any]:
    """The spec of a tiny model from its YAML file (see resources/tinymodels/)."""
    spec = read_yaml(path)
    _check_spec(spec, str(path))
    return spec


def _check_spec(spec: dict[str, Any], where: str) -> None:
    missing = [key for key in SPEC_KEYS if key not in spec]
    if missing:
        raise UserError(f"{where}: tiny model spec lacks {', '.join(missing)}")
    if spec["architecture"] != "qwen2":
        raise UserError(f"{where}: architecture {spec['architecture']!r} is not supported (only qwen2)")
    for key in SPEC_KEYS[1:-1]:
        if not isinstance(spec[key], int) or spec[key] < 0:
            raise UserError(f"{where}: {key} must be a non-negative integer, not {spec[key]!r}")
    if not isinstance(spec["initializer_range"], (int, float)) or spec["initializer_range"] <= 0:
        raise UserError(f"{where}: initializer_range must be a positive number")
    if not isinstance(spec.get("default_system", ""), str) or "'" in spec.get("default_system", ""):
        raise UserError(f"{where}: default_system must be a text without single quotes")
    if spec["num_attention_heads"] % spec["num_key_value_heads"] or spec["hidden_size"] % spec["num_attention_heads"]:
        raise UserError(f"{where}: hidden_size must divide by num_attention_heads, and that by num_key_value_heads")


def build_tiny_model(spec: dict[str, Any], out_dir: Path, corpus_texts: Iterable[str]) -> None:
    """Train a byte-level BPE tokenizer on `corpus_texts` and save it with a random-weight Qwen2 model.

    `spec["vocab_size"]` is the tokenizer's target size; the model's vocabulary is the tokenizer's real
    size (smaller when the corpus is too small to learn that many merges), so every id decodes.
    """
    _check_spec(spec, "tiny model spec")
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus_texts, spec["vocab_size"], spec["max_position_embeddings"], spec.get("default_system"))
    model = _random_model(spec, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)


def train_tokenizer(corpus_texts: Iterable[str], vocab_size: int, max_length: int, default_system: str | None = None):
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # Digits one by one, as Qwen does, so every number is a sequence of the tokens 0-9.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_lines(corpus_texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=chat_template(default_system),
        model_max_length=max_length,
    )
    not_single = [s for s in SINGLE_TOKENS if len(tokenizer.encode(s, add_special_tokens=False)) != 1]
    if not_single:
        raise RuntimeError(f"tokenizer did not learn single tokens for {not_single}; raise vocab_size")
    return tokenizer


def _training_lines(corpus_texts: Iterable[str]) -> Iterator[str]:
    yield from corpus_texts
    yield COMMON_WORDS
    # Repeated often enough that BPE learns each as one token, with and without a leading space.
    for _ in range(1000):
        yield " ".join(SINGLE_TOKENS) + "\n" + "\n".join(SINGLE_TOKENS)


def _random_model(spec: dict[str, Any], tokenizer):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True,
        initializer_range=spec["initializer_range"],
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec["seed"])
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id
    )
    return model
