"""Training checkpoints: ``OUT/checkpoints/step-N``, accelerate's state (the trained tensors,
optimizer, scheduler, RNG) and the step, resumable exactly with ``--resume``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zip2zip.errors import CheckpointError
from zip2zip.files import write_atomic


def keep_trainable_weights(accelerator: Any) -> None:
    """Make accelerate's checkpoints hold only the trained tensors (the LoRA matrices and the
    encoders: 15 MB for SmolLM2-135M instead of 553 MB with the frozen base), so that a
    checkpoint fits through a small transfer. The frozen base comes back from its source when the
    run resumes, so a checkpoint still resumes exactly (`check_checkpoint_weights`). Under FSDP the
    checkpoints stay accelerate's sharded ones."""
    if accelerator.is_fsdp2 or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return

    def trim(models: list[Any], weights: list[dict[str, Any]], output_dir: str) -> None:
        for model, state in zip(models, weights):
            trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
            for name in [key for key in state if key not in trained]:
                del state[name]

    accelerator.register_save_state_pre_hook(trim)


def check_checkpoint_weights(model: Any, checkpoint: Path) -> None:
    """Before resuming: the checkpoint's weights must hold every trained tensor of ``model`` (a
    checkpoint that holds the frozen base too, as older ones do, is fine).

    Raises:
        CheckpointError: a trained tensor is missing (its names, the first few), or the weights file
            is cut short.
    """
    from safetensors import SafetensorError, safe_open

    path = checkpoint / "model.safetensors"
    if not path.is_file():  # sharded (FSDP) or written by torch.save: accelerate checks it
        return
    try:
        with safe_open(str(path), framework="pt") as handle:
            saved = set(handle.keys())
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"checkpoint {checkpoint}: {path.name} is not a valid safetensors file (cut short?): {error}"
        ) from error
    missing = sorted(
        name for name, parameter in model.named_parameters() if parameter.requires_grad and name not in saved
    )
    if missing:
        raise CheckpointError(
            f"checkpoint {checkpoint} lacks {len(missing)} trained tensors ({', '.join(missing[:3])} ...): "
            "it was written for another model or adapter"
        )


def save_checkpoint(accelerator: Any, out: Path, step: int) -> None:
    """``out/checkpoints/step-N``: accelerate's state (the trained weights, optimizer,
    scheduler, RNG; see `keep_trainable_weights`)."""
    folder = out / "checkpoints" / f"step-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        write_atomic(folder / "zip2zip_step.json", json.dumps({"step": step}))


def latest_checkpoint(out: Path) -> Path | None:
    folders = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return folders[-1] if folders else None
