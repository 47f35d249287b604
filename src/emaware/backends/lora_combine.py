"""One LoRA adapter that does what a chain of adapters merged in order does.

Merging a LoRA adds `s·B·A` to a linear layer's weight whatever that weight is, so merging adapters
one after the other adds the sum of their deltas. Stacking their A matrices (and their B matrices)
along the rank gives one adapter of rank r1 + r2 + … whose delta is exactly that sum, once each B is
multiplied by its own adapter's scaling and the result's scaling is 1 (lora_alpha = r, no rsLoRA).
peft's `add_weighted_adapter(..., "cat")` is not this: it keeps `use_rslora`, so the result is scaled
again by alpha/sqrt(r) of the combined rank. Scaling 1 also reads the same in every vLLM version
(older ones ignore `use_rslora`), so even a single adapter is served through here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
A, B = ".lora_A.weight", ".lora_B.weight"
# Settings that give modules their own rank or scale, or weights that are not a plain LoRA delta.
UNSUPPORTED = ("rank_pattern", "alpha_pattern", "modules_to_save", "use_dora", "layers_to_transform")


def combine(adapters: list[str | Path], out_dir: str | Path) -> int:
    """Write to `out_dir` the single adapter equivalent to `adapters` merged in order; its rank."""
    loaded = [_read(Path(adapter)) for adapter in adapters]
    rank = sum(config["r"] for config, _ in loaded)
    modules = list(dict.fromkeys(module for _, weights in loaded for module in weights))
    tensors = {}
    for module in modules:
        a_in, b_out = next(w[module] for _, w in loaded if module in w)  # the layer's shapes
        blocks = [_blocks(config, weights.get(module), a_in.shape[1], b_out.shape[0]) for config, weights in loaded]
        tensors[module + A] = torch.cat([a for a, _ in blocks]).contiguous()
        tensors[module + B] = torch.cat([b for _, b in blocks], dim=1).contiguous()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out_dir / WEIGHTS)
    targets = sorted({module.rsplit(".", 1)[-1] for module in modules})
    config = {**loaded[0][0], "r": rank, "lora_alpha": rank, "use_rslora": False, "target_modules": targets}
    (out_dir / CONFIG).write_text(json.dumps(config, indent=2))
    return rank


def _scaling(config: dict) -> float:
    """What peft multiplies B·A by."""
    r = config["r"]
    return config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)


def _read(adapter: Path) -> tuple[dict, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """An adapter's config and its (A, B) weights by module."""
    config = json.loads((adapter / CONFIG).read_text())
    unsupported = [key for key in UNSUPPORTED if config.get(key)]
    if config.get("peft_type", "LORA") != "LORA" or config.get("bias", "none") != "none" or unsupported:
        raise ValueError(f"{adapter}: not a plain LoRA adapter ({', '.join(unsupported) or 'type or bias'})")
    raw = load_file(adapter / WEIGHTS)
    stray = [key for key in raw if not key.endswith((A, B))]
    if stray:
        raise ValueError(f"{adapter}: weights other than LoRA A and B ({stray[0]} …)")
    modules = sorted(key[: -len(A)] for key in raw if key.endswith(A))
    return config, {module: (raw[module + A], raw[module + B]) for module in modules}


def _blocks(config: dict, weights, in_features: int, out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One adapter's rows of A and columns of B for a module (zeros where it does not touch the module)."""
    if weights is None:
        return torch.zeros(config["r"], in_features), torch.zeros(out_features, config["r"])
    a, b = weights
    return a.float(), b.float() * _scaling(config)
