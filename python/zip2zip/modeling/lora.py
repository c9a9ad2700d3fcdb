# peft's classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""LoRA on a zip2zip model's base: the default target modules per architecture, and peft
helpers (recognising a peft model, undoing a failed adapter injection, quieting a warning,
widening a trained adapter's rank)."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from zip2zip.errors import ConfigError

# LoRA targets per architecture: every attention and MLP projection (not embeddings or heads).
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS: dict[str, list[str]] = {
    **{
        name: _LLAMA_LIKE for name in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3", "gemma3_text")
    },
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}

CONV1D_MODELS = ("gpt2",)


def lora_target_modules(model_type: str) -> list[str] | str:
    """The modules LoRA adapts by default for a base ``model_type``: every attention and MLP
    projection; peft's ``"all-linear"`` for architectures not in :data:`LORA_TARGETS`."""
    return list(LORA_TARGETS.get(model_type, [])) or "all-linear"


def remove_adapter_layers(model: torch.nn.Module) -> None:
    """Put back the plain layers where peft injected adapter layers into ``model`` (after a
    failed load), so that the caller's model is as it was."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())


def is_peft_model(module: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(module, PeftModel)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Wrapping a model with peft under transformers 5.2x warns that peft reads a deprecated
    alias (``is_gradient_checkpointing``): peft's to fix, nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def lora_wrap(
    base: Any,
    r: int = 16,
    alpha: int | None = None,
    dropout: float = 0.0,
    target_modules: list[str] | str | None = None,
    **lora_kwargs: Any,
) -> Any:
    """``base`` wrapped in a peft LoRA adapter (in place: peft injects its layers into ``base``):
    rank ``r``, ``alpha`` (default ``2 * r``), on ``target_modules`` (default:
    :func:`lora_target_modules` of the architecture; ``fan_in_fan_out`` for GPT-2's ``Conv1D``).

    Raises:
        ImportError: peft is not installed.
    """
    from peft import LoraConfig, get_peft_model

    model_type = base.config.model_type
    targets = target_modules if target_modules is not None else lora_target_modules(model_type)
    if model_type in CONV1D_MODELS:  # weights stored (in, out): transformers' Conv1D
        lora_kwargs.setdefault("fan_in_fan_out", True)
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha if alpha is not None else 2 * r,
        lora_dropout=dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        **lora_kwargs,
    )
    with quiet_peft():
        return get_peft_model(base, lora)


@contextlib.contextmanager
def base_only(model: Any) -> Iterator[Any]:
    """The base model of a zip2zip ``model`` with its adapter (if any) disabled: the base model
    as it was before uptraining (the teacher of the distillation term, the reference of
    ``zip2zip eval``)."""
    if model.has_adapter:
        with model.base.disable_adapter():
            yield model.base
    else:
        yield model.base


def grow_lora_rank(model: Any, r: int, adapter: str = "default") -> int:
    """Widen the LoRA adapter ``adapter`` of the peft ``model`` to rank ``r`` in place, so that
    it computes what it did; returns the number of layers widened (0 when it has rank ``r``).

    Each layer's ``A`` gains ``r - r_old`` rows initialised as peft initialises ``A`` (Kaiming
    uniform) and its ``B`` as many zero columns, so the new directions add nothing until they
    train; ``lora_alpha`` grows with the rank (by ``r / r_old``, or its square root with
    rsLoRA), which keeps each layer's scale, so the old directions keep their weight. The
    adapter's config records the new rank and alpha: the model saves and reloads with them.

    Raises:
        ConfigError: ``r`` is below the adapter's rank, or the adapter is one this cannot widen
            (per-module ranks or alphas, a LoRA variant such as DoRA, embedding or
            convolution layers).
    """
    from peft.tuners.lora import LoraLayer

    config = model.peft_config[adapter]
    old = int(config.r)
    if r < old:
        raise ConfigError(f"cannot grow a rank-{old} LoRA adapter to rank {r}")
    if config.rank_pattern or config.alpha_pattern or getattr(config, "use_dora", False):
        raise ConfigError("cannot grow a LoRA adapter with per-module ranks or alphas, or a DoRA adapter")
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and adapter in m.r]
    for layer in layers:
        if adapter in layer.lora_embedding_A or layer.lora_variant.get(adapter) is not None:
            raise ConfigError(f"cannot grow the LoRA adapter of a {type(layer).__name__} layer")
        if not all(isinstance(m[adapter], torch.nn.Linear) for m in (layer.lora_A, layer.lora_B)):
            raise ConfigError(f"cannot grow the LoRA adapter of a {type(layer).__name__} layer")
    if r == old:
        return 0
    alpha: float = config.lora_alpha * (math.sqrt(r / old) if config.use_rslora else r / old)
    if alpha.is_integer():
        alpha = int(alpha)
    for layer in layers:
        layer.lora_A[adapter] = _widened(layer.lora_A[adapter], r, rows=True)
        layer.lora_B[adapter] = _widened(layer.lora_B[adapter], r, rows=False)
        layer.r[adapter], layer.lora_alpha[adapter] = r, alpha
    config.r, config.lora_alpha = r, alpha
    return len(layers)


def _widened(linear: Any, r: int, rows: bool) -> torch.nn.Linear:
    """``linear`` (a LoRA ``A`` when ``rows``, else a ``B``) with rank ``r``: ``A``'s new rows
    as peft initialises them, ``B``'s new columns zero; its old weights, bias and trainability
    kept."""
    weight = linear.weight
    shape = (r, linear.in_features) if rows else (linear.out_features, r)
    wide = torch.nn.Linear(shape[1], shape[0], bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        if rows:
            torch.nn.init.kaiming_uniform_(wide.weight, a=math.sqrt(5))
            wide.weight[: weight.shape[0]] = weight
        else:
            wide.weight.zero_()
            wide.weight[:, : weight.shape[1]] = weight
        if linear.bias is not None:
            wide.bias.copy_(linear.bias)
    wide.requires_grad_(weight.requires_grad)
    return wide
