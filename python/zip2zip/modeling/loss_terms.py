"""The interface between a zip2zip model's ``forward`` and extra training loss terms.

A loss term is an object with a ``name``, a ``weight`` and a ``__call__`` that takes the
:class:`LossInputs` of one forward pass and returns its value (a scalar tensor, unweighted).
``forward(..., labels=..., loss_terms=[...])`` adds ``weight x value`` of each term to the code
loss and returns the values, detached, in ``output.loss_terms`` (``{name: value}``). The terms
training uses live in `zip2zip.training.losses`.

Why inside ``forward``: a term may run the base model again (the distillation teacher) and reads
the base's embedding and head weights. Under FSDP2 those weights are gathered only while the
wrapper's ``forward`` runs (the wrapper is the unit that holds them), and DDP sets up its
gradient reduction for what ``forward`` computes; a term called after ``forward`` would see
sharded weights or escape the reduction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.utils.checkpoint

from zip2zip.ops.reference import IGNORE_INDEX


@dataclass(frozen=True)
class LossInputs:
    """What ``forward`` hands each loss term.

    Attributes:
        model: the `Zip2ZipForCausalLM` running the forward pass.
        input_ids: ``[B, L]`` the codes read.
        labels: ``[B, L]`` the codes to predict (not shifted).
        hidden: ``[B, L, H]`` the base model's last hidden states over the codes.
        head: ``[V, H]`` the base model's output embedding.
        output_rows: ``[B, E, H]`` the hypertokens' output rows.
        codebook: ``[B, E, S]`` the entries' phrases.
        installed: ``[B, L]`` entries a decoder has after each code.
        scored: ``[B, L - 1]`` the positions whose next code the code loss scores (the target is
            not ``-100`` and installed when predicted).
        codebook_lengths: ``[B, E]`` the entries' phrase lengths (``forward`` always passes them).
    """

    model: Any
    input_ids: torch.Tensor
    labels: torch.Tensor
    hidden: torch.Tensor
    head: torch.Tensor
    output_rows: torch.Tensor
    codebook: torch.Tensor
    installed: torch.Tensor
    scored: torch.Tensor
    codebook_lengths: torch.Tensor | None = None


class LossTerm(Protocol):
    """A training loss term ``forward`` adds to the code loss (see the module's docstring)."""

    name: str
    weight: float

    def __call__(self, inputs: LossInputs) -> torch.Tensor: ...


def scored_targets(labels: torch.Tensor, installed: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[B, L - 1]``: where the code loss scores the next code (its target is not ``-100`` and is
    a base id or a hypertoken installed when it is predicted; the KwKwK case is not)."""
    targets = labels[:, 1:]
    return (targets != IGNORE_INDEX) & (targets < vocab_size + installed[:, :-1])


def over_chunks(
    piece: Callable[..., torch.Tensor], length: int, chunk: int, *tensors: torch.Tensor
) -> torch.Tensor | None:
    """``piece`` over positions ``0 .. length - 1`` of ``tensors`` (each ``[B, L, ...]`` with
    ``L >= length``, sliced along dimension 1), ``chunk`` positions at a time, the results concatenated along their last
    dimension (None when there is no position). With gradients on, each chunk is checkpointed
    (recomputed in backward), so memory stays at one chunk of whatever ``piece`` builds (the
    ``[B, chunk, V + K]`` logits of the loss terms that read them)."""
    parts = []
    for begin in range(0, length, chunk):
        stop = min(begin + chunk, length)
        args = tuple(tensor[:, begin:stop] for tensor in tensors)
        if torch.is_grad_enabled():
            parts.append(torch.utils.checkpoint.checkpoint(piece, *args, use_reentrant=False))
        else:
            parts.append(piece(*args))
    return torch.cat(parts, -1) if parts else None
