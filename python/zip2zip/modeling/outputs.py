"""What a zip2zip model's ``forward`` returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast


@dataclass
class Zip2ZipCausalLMOutput(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus ``loss_terms``: the value of each training loss term that
    ``forward`` was given (detached, by name; `zip2zip.modeling.loss_terms`), or ``None``."""

    loss_terms: dict[str, torch.Tensor] | None = None
