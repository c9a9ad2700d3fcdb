"""Triton kernels of the zip2zip ops (the CUDA implementation; also runs on the CPU under
``TRITON_INTERPRET=1``, which must be set before this module is imported).

* hyper-gather: one program per (entry, block of the hidden width) reads the entry's real
  sub-token rows once, accumulates in fp32 and writes the first and the mean row; backward
  scatter-adds into an fp32 table with atomics. (A variant loading a tile of up to 8 rows at
  once ran 5 to 14 times slower on an H100 and was dropped.)
* cross-entropy rows: one program per position of a chunk streams its base logits and its
  available hyper logits twice (online max and sum of exponentials, then the gradient), writing
  the gradient of ``scale * loss`` over the logits in place; the matrix products around it stay
  with cuBLAS (`reference.cross_entropy_forward` drives the chunks).
"""

# Triton kernels are untyped by nature (their arguments are pointers and constexprs).
# mypy: disable-error-code="untyped-decorator,no-untyped-def"
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gather_forward_kernel(
    weight_ptr,
    weight_stride,
    phrases_ptr,
    lengths_ptr,
    first_ptr,
    mean_ptr,
    hidden,
    slots,
    BLOCK: tl.constexpr,
):
    entry = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < hidden
    length = tl.load(lengths_ptr + entry).to(tl.int32)
    first = tl.zeros([BLOCK], dtype=tl.float32)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    if length > 0:
        index = tl.load(phrases_ptr + entry * slots).to(tl.int64)
        first = tl.load(weight_ptr + index * weight_stride + cols, mask=inside, other=0.0).to(tl.float32)
        total = first
        for j in range(1, length):
            index = tl.load(phrases_ptr + entry * slots + j).to(tl.int64)
            total += tl.load(weight_ptr + index * weight_stride + cols, mask=inside, other=0.0).to(tl.float32)
    mean = total / tl.maximum(length, 1).to(tl.float32)
    out = entry * hidden + cols
    tl.store(first_ptr + out, first.to(first_ptr.dtype.element_ty), mask=inside)
    tl.store(mean_ptr + out, mean.to(mean_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _gather_backward_kernel(
    grad_ptr,
    grad_first_ptr,
    grad_mean_ptr,
    phrases_ptr,
    lengths_ptr,
    hidden,
    slots,
    BLOCK: tl.constexpr,
):
    entry = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < hidden
    length = tl.load(lengths_ptr + entry).to(tl.int32)
    if length > 0:
        at = entry * hidden + cols
        share = tl.load(grad_mean_ptr + at, mask=inside, other=0.0).to(tl.float32) / length.to(tl.float32)
        head = share + tl.load(grad_first_ptr + at, mask=inside, other=0.0).to(tl.float32)
        index = tl.load(phrases_ptr + entry * slots).to(tl.int64)
        tl.atomic_add(grad_ptr + index * hidden + cols, head, mask=inside, sem="relaxed")
        for j in range(1, length):
            index = tl.load(phrases_ptr + entry * slots + j).to(tl.int64)
            tl.atomic_add(grad_ptr + index * hidden + cols, share, mask=inside, sem="relaxed")


def _blocks(hidden: int) -> tuple[int, int]:
    """(column block, warps) of the gather kernels."""
    block = min(triton.next_power_of_2(hidden), 1024)
    return block, max(1, min(8, block // 128))


def gather_forward(
    weight: torch.Tensor, phrases: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of `reference.gather_forward`."""
    count, slots = phrases.shape
    hidden = weight.shape[1]
    phrases = phrases.contiguous()
    lengths = lengths.contiguous()
    if weight.stride(1) != 1:
        weight = weight.contiguous()
    first = weight.new_empty(count, hidden)
    mean = weight.new_empty(count, hidden)
    if count == 0 or hidden == 0:
        return first, mean
    block, warps = _blocks(hidden)
    grid = (count, triton.cdiv(hidden, block))
    _gather_forward_kernel[grid](
        weight,
        weight.stride(0),
        phrases,
        lengths,
        first,
        mean,
        hidden,
        slots,
        BLOCK=block,
        num_warps=warps,
    )
    return first, mean


def gather_backward(
    grad_first: torch.Tensor, grad_mean: torch.Tensor, phrases: torch.Tensor, lengths: torch.Tensor, num_rows: int
) -> torch.Tensor:
    """Triton version of `reference.gather_backward` (fp32 result)."""
    count, slots = phrases.shape
    hidden = grad_mean.shape[1]
    grad = torch.zeros(num_rows, hidden, dtype=torch.float32, device=grad_mean.device)
    if count == 0 or hidden == 0:
        return grad
    block, warps = _blocks(hidden)
    grid = (count, triton.cdiv(hidden, block))
    _gather_backward_kernel[grid](
        grad,
        grad_first.contiguous(),
        grad_mean.contiguous(),
        phrases.contiguous(),
        lengths.contiguous(),
        hidden,
        slots,
        BLOCK=block,
        num_warps=warps,
    )
    return grad


@triton.jit
def _capped(x, softcap, HAS_SOFTCAP: tl.constexpr):
    if HAS_SOFTCAP:
        # tanh through exp (the interpreter has no libdevice): 1 - 2 / (exp(2y) + 1)
        x = softcap * (1.0 - 2.0 / (tl.exp(2.0 * x / softcap) + 1.0))
    return x


@triton.jit
def _online_sum_exp(logits, count, top, sums, softcap, HAS_SOFTCAP: tl.constexpr, BLOCK: tl.constexpr):
    """Fold ``logits[:count]`` into the per-lane running maximum ``top`` and ``sums`` of exp."""
    offsets = tl.arange(0, BLOCK)
    for start in range(0, count, BLOCK):
        cols = start + offsets
        inside = cols < count
        x = _capped(tl.load(logits + cols, mask=inside, other=0.0).to(tl.float32), softcap, HAS_SOFTCAP)
        x = tl.where(inside, x, float("-inf"))
        new_top = tl.maximum(top, x)
        sums = sums * tl.exp(top - new_top) + tl.exp(x - new_top)
        top = new_top
    return top, sums


@triton.jit
def _write_gradient(logits, count, usable, target, lse, scale, softcap, HAS_SOFTCAP: tl.constexpr, BLOCK: tl.constexpr):
    """Overwrite ``logits[:count]`` with ``scale * (softmax - onehot(target))`` (through the
    soft-cap's derivative); columns at or after ``usable`` get 0."""
    offsets = tl.arange(0, BLOCK)
    for start in range(0, count, BLOCK):
        cols = start + offsets
        inside = cols < count
        x = _capped(tl.load(logits + cols, mask=inside, other=0.0).to(tl.float32), softcap, HAS_SOFTCAP)
        grad = tl.exp(x - lse) - tl.where(cols == target, 1.0, 0.0)
        if HAS_SOFTCAP:
            grad = grad * (1.0 - (x / softcap) * (x / softcap))
        grad = tl.where(cols < usable, grad * scale, 0.0)
        tl.store(logits + cols, grad.to(logits.dtype.element_ty), mask=inside)


@triton.jit
def _ce_rows_kernel(
    base_ptr,
    base_stride,
    hyper_ptr,
    hyper_stride,
    targets_ptr,
    available_ptr,
    losses_ptr,
    vocab,
    entries,
    scale,
    softcap,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = base_ptr + row * base_stride
    hyper = hyper_ptr + row * hyper_stride
    target = tl.load(targets_ptr + row).to(tl.int64)
    usable = tl.minimum(tl.load(available_ptr + row).to(tl.int64), entries)

    # Pass 1: online maximum and sum of exponentials over the base and the usable hyper logits
    # (a finite floor instead of -inf keeps every difference finite).
    top = tl.full([BLOCK], -3.0e38, tl.float32)
    sums = tl.zeros([BLOCK], dtype=tl.float32)
    top, sums = _online_sum_exp(base, vocab, top, sums, softcap, HAS_SOFTCAP, BLOCK)
    top, sums = _online_sum_exp(hyper, usable, top, sums, softcap, HAS_SOFTCAP, BLOCK)
    best = tl.max(top, axis=0)
    lse = best + tl.log(tl.sum(sums * tl.exp(top - best), axis=0))

    in_base = target < vocab
    target_base = tl.load(base + tl.minimum(target, vocab - 1)).to(tl.float32)
    target_hyper = tl.load(hyper + tl.maximum(target - vocab, 0), mask=(target >= vocab) & (entries > 0), other=0.0)
    picked = _capped(tl.where(in_base, target_base, target_hyper.to(tl.float32)), softcap, HAS_SOFTCAP)
    tl.store(losses_ptr + row, lse - picked)

    # Pass 2: the gradient of scale * (lse - picked), in place; unusable hyper slots get 0.
    _write_gradient(base, vocab, vocab, target, lse, scale, softcap, HAS_SOFTCAP, BLOCK)
    _write_gradient(hyper, entries, usable, target - vocab, lse, scale, softcap, HAS_SOFTCAP, BLOCK)


def ce_rows(
    base: torch.Tensor,
    hyper: torch.Tensor,
    targets: torch.Tensor,
    available: torch.Tensor,
    scale: float,
    softcap: float,
) -> torch.Tensor:
    """Triton version of `reference.ce_rows_reference` (a `reference.RowKernel`)."""
    rows, vocab = base.shape
    entries = hyper.shape[1]
    losses = torch.empty(rows, dtype=torch.float32, device=base.device)
    if rows == 0:
        return losses
    if base.stride(1) != 1 or hyper.stride(1) != 1:
        raise ValueError("ce_rows needs logits contiguous along the vocabulary")
    hyper_arg = hyper if entries else base  # never read when there are no entries
    _ce_rows_kernel[(rows,)](
        base,
        base.stride(0),
        hyper_arg,
        hyper_arg.stride(0),
        targets.contiguous(),
        available.contiguous(),
        losses,
        vocab,
        entries,
        scale,
        float(softcap),
        HAS_SOFTCAP=softcap > 0,
        BLOCK=2048,
        num_warps=8,
    )
    return losses
