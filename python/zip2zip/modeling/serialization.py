# transformers' and peft's classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""Saving and loading zip2zip models.

A model without an adapter is saved as transformers saves any model (config and all weights).
A model whose base carries a peft adapter is saved as its config, ``generation_config.json``,
the encoders (:data:`ENCODERS_FILE`) and the adapter (:data:`ADAPTER_FOLDER`); loading it
reloads the base from ``config.base_source`` (or takes a given one). Every file is read and
checked before anything is changed, and a save goes through a staging folder, so that a failure
leaves neither a half-loaded model nor a half-written folder.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationConfig, PreTrainedModel

from zip2zip.errors import CheckpointError
from zip2zip.files import staged_save
from zip2zip.modeling.configuration import Zip2ZipConfig
from zip2zip.modeling.lora import quiet_peft, remove_adapter_layers
from zip2zip.sources import load_base_model

if TYPE_CHECKING:
    from zip2zip.modeling.model import Zip2ZipForCausalLM

ENCODERS_FILE = "zip2zip_encoders.safetensors"
ADAPTER_FOLDER = "adapter"


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file.

    Raises:
        FileNotFoundError: no file.
        CheckpointError: not a whole safetensors file (cut short, say); the message names the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a valid safetensors file (cut short or corrupt?): {error}") from error


def check_loading_info(info: dict[str, Any]) -> None:
    """Raise if transformers' loading report lists missing, unexpected or reshaped weights
    (a silently random encoder would look like a trained one).

    Raises:
        CheckpointError: naming up to five keys of each kind.
    """
    problems = {name: sorted(info.get(name) or []) for name in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {name: keys for name, keys in problems.items() if keys}
    if problems:
        listed = "; ".join(
            f"{name}: {', '.join(map(str, keys[:5]))}{' ...' if len(keys) > 5 else ''}"
            for name, keys in problems.items()
        )
        raise CheckpointError(f"the checkpoint does not match the model ({listed})")


def encoder_tensors(
    hyper: torch.nn.Module, state_dict: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The encoders' weights in a state dict of the whole model, named and laid out as
    ``safetensors.torch.save_model(hyper, ...)`` writes them (contiguous, on the CPU), and the
    file's metadata. A tensor the encoders share (tied encoders) is written once, under the
    first of its names in sorted order; the metadata maps the others to it, which
    ``load_model(..., strict=True)`` accepts. Which names share a tensor comes from the modules
    (FSDP's gathered state dict holds a separate copy under each name).

    Raises:
        CheckpointError: ``state_dict`` lacks an encoder weight.
    """
    shared: dict[int, list[str]] = {}
    for name, tensor in hyper.state_dict(keep_vars=True).items():
        shared.setdefault(id(tensor), []).append(name)
    tensors: dict[str, torch.Tensor] = {}
    metadata = {"format": "pt"}
    for names in shared.values():
        kept, *others = sorted(names)
        value = state_dict.get("hyper." + kept)
        if value is None:
            raise CheckpointError(
                f"state_dict has no hyper.{kept}: pass a state dict of the whole model (under FSDP, what "
                "accelerator.get_state_dict(model) returns on the main process)"
            )
        tensors[kept] = value.detach().to("cpu").contiguous()
        metadata.update({other: kept for other in others})
    return tensors, metadata


def save_adapter_folder(
    model: Zip2ZipForCausalLM, save_directory: str | os.PathLike[str], state_dict: dict[str, torch.Tensor] | None
) -> None:
    """Write the layout of a model with an adapter (see the module's docstring).

    Raises:
        CheckpointError: the config has no ``base_source`` (nothing would say where the base
            weights come from), or ``state_dict`` lacks encoder weights; nothing is written.
    """
    if not model.config.base_source:
        raise CheckpointError(
            "this model has a LoRA adapter but no base_source to reload its base from: set "
            "model.config.base_source to the base's hub id, folder or GGUF file (or pass base_source= to from_base)"
        )
    from safetensors.torch import save_file, save_model

    encoders = None if state_dict is None else encoder_tensors(model.hyper, state_dict)  # raises before writing
    # Written into a staging folder, then moved in file by file: a failed save (a full disk)
    # leaves the folder as it was.
    with staged_save(save_directory) as stage:
        folder = os.fspath(stage)
        model.config.save_pretrained(folder)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(folder)
        if state_dict is None or encoders is None:  # both None or both set; mypy needs to see both
            save_model(model.hyper, os.path.join(folder, ENCODERS_FILE), metadata={"format": "pt"})
            model.base.save_pretrained(os.path.join(folder, ADAPTER_FOLDER))
            return
        tensors, metadata = encoders
        save_file(tensors, os.path.join(folder, ENCODERS_FILE), metadata=metadata)
        # peft picks the adapter's weights out of a state dict of the PeftModel (keys "base_model.model.…").
        base_state = {key.removeprefix("base."): value for key, value in state_dict.items() if key.startswith("base.")}
        model.base.save_pretrained(os.path.join(folder, ADAPTER_FOLDER), state_dict=base_state)


def load_adapter_folder(
    cls: type[Zip2ZipForCausalLM],
    folder: str,
    base_model: PreTrainedModel | None,
    is_trainable: bool,
    **model_kwargs: Any,
) -> Zip2ZipForCausalLM:
    """Load the layout :func:`save_adapter_folder` writes.

    Raises:
        FileNotFoundError: the adapter or the encoders are missing.
        CheckpointError: the config names no base and none is given, or the encoders do not
            match the model, or a weights file is cut short.
    """
    from peft import PeftModel
    from safetensors.torch import load_model

    config = Zip2ZipConfig.from_pretrained(folder)
    if base_model is None:
        if not config.base_source:
            raise CheckpointError(
                f"{folder} holds no base weights and its config names no base_source: pass base_model="
            )
        base_model = load_base_model(config.base_source, **model_kwargs)
    adapter = os.path.join(folder, ADAPTER_FOLDER)
    if not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
        raise FileNotFoundError(f"{folder} has encoders but no adapter: {adapter}/adapter_config.json is missing")
    # Every file is read and checked before the base is touched: PeftModel.from_pretrained
    # injects the adapter into the caller's base in place, so a bad file found after that
    # would leave a changed base behind.
    encoders_file = os.path.join(folder, ENCODERS_FILE)
    read_safetensors(encoders_file)
    adapter_weights = os.path.join(adapter, "adapter_model.safetensors")
    if os.path.isfile(adapter_weights):
        read_safetensors(adapter_weights)
    model = cls(config, base_model=base_model)
    try:
        # load_model, not load_state_dict: tied encoders are saved once (see encoder_tensors).
        load_model(model.hyper, encoders_file, strict=True)
    except RuntimeError as error:  # missing, unexpected or reshaped encoder weights
        raise CheckpointError(f"the encoders in {folder} do not match the model: {error}") from error
    # Wrapped after construction: post_init would re-initialise the adapter's new layers.
    try:
        with quiet_peft():
            model.base = PeftModel.from_pretrained(model.base, adapter, is_trainable=is_trainable)
    except BaseException:
        remove_adapter_layers(base_model)
        raise
    if os.path.isfile(os.path.join(folder, "generation_config.json")):
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model
