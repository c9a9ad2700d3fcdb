"""zip2zip's two tensor ops, registered with ``torch.library`` (DESIGN.md section 5).

* :func:`hyper_gather`: the first and the mean base row of every entry of a ragged batch of
  codebooks, with its backward (a scatter-add into the table).
* :func:`hyper_cross_entropy`: the training loss over ``[LM head; per-sequence hyper rows]``
  with a per-position availability limit, computed in chunks of positions, never holding the
  full ``positions x (V + E)`` logits.

Each op has a pure-torch implementation (`zip2zip.ops.reference`, used on the CPU and on any
device without a kernel) and a Triton implementation (`zip2zip.ops.triton_kernels`) that
``torch.library`` dispatches to for CUDA tensors. Both work under ``torch.compile``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zip2zip.errors import ModelInputError
from zip2zip.ops import reference

__all__ = ["hyper_gather", "hyper_cross_entropy"]

# Chunk logits are at most this many elements (128 Mi: 256 MiB in bf16): a compromise between
# memory and speed, since larger chunks mean fewer, larger matrix products. Forward + backward at
# T=4096 on an H100: V=49,152 took 2.4 ms with 1,024 positions per chunk and 1.6 ms with 4,096;
# V=128,256 took 7.9 and 7.5 ms.
CHUNK_ELEMENTS = 1 << 27


# ---------------------------------------------------------------------------- hyper_gather


@torch.library.custom_op("zip2zip::hyper_gather", mutates_args=())
def _gather(weight: Tensor, phrases: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    return reference.gather_forward(weight, phrases, lengths)


@_gather.register_kernel("cuda")
def _gather_cuda(weight: Tensor, phrases: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    from zip2zip.ops import triton_kernels

    return triton_kernels.gather_forward(weight, phrases, lengths)


@_gather.register_fake
def _gather_fake(weight: Tensor, phrases: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    shape = (phrases.shape[0], weight.shape[1])
    return weight.new_empty(shape), weight.new_empty(shape)


@torch.library.custom_op("zip2zip::hyper_gather_backward", mutates_args=())
def _gather_backward(grad_first: Tensor, grad_mean: Tensor, phrases: Tensor, lengths: Tensor, num_rows: int) -> Tensor:
    return reference.gather_backward(grad_first, grad_mean, phrases, lengths, num_rows)


@_gather_backward.register_kernel("cuda")
def _gather_backward_cuda(
    grad_first: Tensor, grad_mean: Tensor, phrases: Tensor, lengths: Tensor, num_rows: int
) -> Tensor:
    from zip2zip.ops import triton_kernels

    return triton_kernels.gather_backward(grad_first, grad_mean, phrases, lengths, num_rows)


@_gather_backward.register_fake
def _gather_backward_fake(
    grad_first: Tensor, grad_mean: Tensor, phrases: Tensor, lengths: Tensor, num_rows: int
) -> Tensor:
    return grad_mean.new_empty((num_rows, grad_mean.shape[1]), dtype=torch.float32)


def _gather_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    weight, phrases, lengths = inputs
    ctx.save_for_backward(phrases, lengths)
    ctx.num_rows = weight.shape[0]
    ctx.dtype = weight.dtype


def _gather_grad(ctx: Any, grad_first: Tensor | None, grad_mean: Tensor | None) -> tuple[Tensor | None, None, None]:
    if not ctx.needs_input_grad[0]:
        return None, None, None
    phrases, lengths = ctx.saved_tensors
    like = grad_mean if grad_mean is not None else grad_first
    assert like is not None
    grad_first = torch.zeros_like(like) if grad_first is None else grad_first
    grad_mean = torch.zeros_like(like) if grad_mean is None else grad_mean
    return _gather_backward(grad_first, grad_mean, phrases, lengths, ctx.num_rows).to(ctx.dtype), None, None


_gather.register_autograd(_gather_grad, setup_context=_gather_setup)


def hyper_gather(weight: Tensor, phrases: Tensor, lengths: Tensor, *, check: bool = True) -> tuple[Tensor, Tensor]:
    """The first and the mean row of each entry's sub-tokens.

    Args:
        weight: ``[V, H]`` table (an embedding or an LM head).
        phrases: ``[N, S]`` integer ids of each entry's sub-tokens; slots at or after the
            entry's length are ignored.
        lengths: ``[N]`` sub-tokens per entry, ``0..S`` (0: a padding entry, both rows zero).
        check: validate lengths and ids on the device first (one synchronisation); an id out
            of range would otherwise read outside the table in the CUDA kernel.

    Returns:
        ``(first, mean)``, each ``[N, H]`` in ``weight``'s dtype (the mean accumulated in fp32).
        Differentiable with respect to ``weight``.

    Raises:
        ModelInputError: shapes, dtypes or devices that disagree; a length or an id out of range.
    """
    if weight.dim() != 2 or phrases.dim() != 2 or lengths.dim() != 1 or lengths.shape[0] != phrases.shape[0]:
        raise ModelInputError(
            f"hyper_gather needs weight [V, H], phrases [N, S] and lengths [N]; got {tuple(weight.shape)}, "
            f"{tuple(phrases.shape)} and {tuple(lengths.shape)}"
        )
    if phrases.is_floating_point() or lengths.is_floating_point():
        raise ModelInputError("hyper_gather needs integer phrases and lengths")
    if not (weight.device == phrases.device == lengths.device):
        raise ModelInputError(
            f"hyper_gather: tensors on different devices ({weight.device}, {phrases.device}, {lengths.device})"
        )
    if check and phrases.numel():
        slots = phrases.shape[1]
        real = torch.arange(slots, device=phrases.device)[None, :] < lengths[:, None]
        bad_length = (lengths < 0) | (lengths > slots)
        bad_id = real & ((phrases < 0) | (phrases >= weight.shape[0]))
        if bool(bad_length.any() | bad_id.any()):
            if bool(bad_length.any()):
                n = int(bad_length.nonzero()[0, 0])
                raise ModelInputError(f"hyper_gather: entry {n} has length {int(lengths[n])}, outside 0..{slots}")
            n, j = (int(i) for i in bad_id.nonzero()[0])
            raise ModelInputError(
                f"hyper_gather: id {int(phrases[n, j])} of entry {n} is outside the table's {weight.shape[0]} rows"
            )
    first, mean = _gather(weight, phrases, lengths)
    return first, mean


# ---------------------------------------------------------------------------- hyper_cross_entropy


@torch.library.custom_op("zip2zip::hyper_cross_entropy", mutates_args=())
def _cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    rows: Tensor,
    targets: Tensor,
    available: Tensor,
    softcap: float,
    chunk_size: int,
    need_hidden_grad: bool,
    need_weight_grad: bool,
    need_rows_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return reference.cross_entropy_forward(
        hidden,
        weight,
        rows,
        targets,
        available,
        softcap,
        chunk_size,
        need_hidden_grad,
        need_weight_grad,
        need_rows_grad,
    )


@_cross_entropy.register_kernel("cuda")
def _cross_entropy_cuda(
    hidden: Tensor,
    weight: Tensor,
    rows: Tensor,
    targets: Tensor,
    available: Tensor,
    softcap: float,
    chunk_size: int,
    need_hidden_grad: bool,
    need_weight_grad: bool,
    need_rows_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from zip2zip.ops import triton_kernels

    return reference.cross_entropy_forward(
        hidden,
        weight,
        rows,
        targets,
        available,
        softcap,
        chunk_size,
        need_hidden_grad,
        need_weight_grad,
        need_rows_grad,
        row_kernel=triton_kernels.ce_rows,
    )


@_cross_entropy.register_fake
def _cross_entropy_fake(
    hidden: Tensor,
    weight: Tensor,
    rows: Tensor,
    targets: Tensor,
    available: Tensor,
    softcap: float,
    chunk_size: int,
    need_hidden_grad: bool,
    need_weight_grad: bool,
    need_rows_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return (
        hidden.new_empty((), dtype=torch.float32),
        torch.empty_like(hidden) if need_hidden_grad else hidden.new_empty(0),
        torch.empty_like(weight) if need_weight_grad else weight.new_empty(0),
        torch.empty_like(rows) if need_rows_grad else rows.new_empty(0),
    )


def _cross_entropy_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    _, grad_hidden, grad_weight, grad_rows = output
    ctx.save_for_backward(grad_hidden, grad_weight, grad_rows)
    ctx.need_hidden_grad, ctx.need_weight_grad, ctx.need_rows_grad = inputs[7], inputs[8], inputs[9]
    ctx.consumed = False


def _cross_entropy_grad(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    # The gradients were computed in forward; scaling them in place keeps one copy of the LM
    # head's gradient (the largest tensor here) instead of two, so backward runs only once.
    if ctx.consumed:
        raise RuntimeError(
            "hyper_cross_entropy's backward can run only once per forward (its gradients are "
            "computed in forward and scaled in place); run the forward again"
        )
    ctx.consumed = True
    grad_hidden, grad_weight, grad_rows = ctx.saved_tensors
    # Traced graphs may not mutate saved tensors (and plan their own memory): out of place there.
    traced = torch.compiler.is_compiling() or type(grad_loss) is not torch.Tensor  # FakeTensor, FunctionalTensor

    def scaled(grad: Tensor) -> Tensor:
        factor = grad_loss.to(grad.dtype)
        return grad * factor if traced else grad.mul_(factor)

    return (
        scaled(grad_hidden) if ctx.need_hidden_grad else None,
        scaled(grad_weight) if ctx.need_weight_grad else None,
        scaled(grad_rows) if ctx.need_rows_grad else None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )


_cross_entropy.register_autograd(_cross_entropy_grad, setup_context=_cross_entropy_setup)


def default_chunk_size(vocab: int, entries: int) -> int:
    """Positions per chunk: logits of a chunk hold at most `CHUNK_ELEMENTS` values."""
    return max(1, CHUNK_ELEMENTS // max(vocab + entries, 1))


def hyper_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    rows: Tensor,
    targets: Tensor,
    available: Tensor,
    *,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Mean next-code cross-entropy over ``[hidden @ weight.T; hidden @ rows[b].T]``.

    Position ``t`` of sequence ``b`` scores ``targets[b, t]`` among the ``V`` base ids and the
    first ``available[b, t]`` hyper rows of its sequence. Targets equal to ``-100`` and
    hypertokens not available yet (the KwKwK case) are ignored. The gradients are computed in
    the same chunked pass, so memory stays at one chunk of logits (see `default_chunk_size`).

    Args:
        hidden: ``[B, T, H]`` hidden states of the predicting positions (already shifted).
        weight: ``[V, H]`` LM head.
        rows: ``[B, E, H]`` per-sequence hyper output rows (E may be 0).
        targets: ``[B, T]`` integer target codes.
        available: ``[B, T]`` integer count of usable hyper rows at each position.
        softcap: the base model's final-logit soft-capping, applied to every logit.
        chunk_size: positions per chunk (default: `default_chunk_size`).

    Returns:
        The 0-d fp32 mean loss over the targets that count (0 when none does).

    Raises:
        ModelInputError: shapes, dtypes or devices that disagree.
    """
    if hidden.dim() != 3 or weight.dim() != 2 or rows.dim() != 3:
        raise ModelInputError(
            f"hyper_cross_entropy needs hidden [B, T, H], weight [V, H] and rows [B, E, H]; got "
            f"{tuple(hidden.shape)}, {tuple(weight.shape)} and {tuple(rows.shape)}"
        )
    batch, length, size = hidden.shape
    if weight.shape[1] != size or rows.shape[0] != batch or rows.shape[2] != size:
        raise ModelInputError(
            f"hyper_cross_entropy: widths disagree: hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}, rows {tuple(rows.shape)}"
        )
    if targets.shape != (batch, length) or available.shape != (batch, length):
        raise ModelInputError(
            f"hyper_cross_entropy: targets and available must be [B, T] = {(batch, length)}; got "
            f"{tuple(targets.shape)} and {tuple(available.shape)}"
        )
    if targets.is_floating_point() or available.is_floating_point():
        raise ModelInputError("hyper_cross_entropy needs integer targets and available counts")
    if len({hidden.device, weight.device, rows.device, targets.device, available.device}) != 1:
        raise ModelInputError("hyper_cross_entropy: tensors on different devices")
    if weight.dtype != hidden.dtype:
        raise ModelInputError(f"hyper_cross_entropy: weight is {weight.dtype} but hidden is {hidden.dtype}")
    rows = rows.to(hidden.dtype)
    chunk = chunk_size if chunk_size is not None else default_chunk_size(weight.shape[0], rows.shape[1])
    if chunk < 1:
        raise ModelInputError(f"chunk_size must be positive, got {chunk}")
    grad = torch.is_grad_enabled()
    loss: Tensor
    loss, *_ = _cross_entropy(
        hidden,
        weight,
        rows,
        targets,
        available.to(targets.dtype),
        float(softcap or 0.0),
        int(chunk),
        grad and hidden.requires_grad,
        grad and weight.requires_grad,
        grad and rows.requires_grad,
    )
    return loss
