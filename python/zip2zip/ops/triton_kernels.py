"""Triton kernels of the zip2zip ops (the CUDA implementation; also runs on the CPU under
``TRITON_INTERPRET=1``, which must be set before this module is imported).

* hyper-gather: one program per tile of (entries, block of the hidden width) reads each entry's
  real sub-token rows once, accumulates in fp32 and writes the first and the mean row; backward
  scatter-adds into an fp32 table with atomics. A tile is 8 entries x 128 columns
  (`gather_config`, measured), so a 576-wide table is not read through 1,024-lane blocks.
  (A variant loading up to 8 rows of one entry at once ran 5 to 14 times slower on an H100 and
  was dropped.)
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
    count,
    hidden,
    slots,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # A tile of ROWS entries x BLOCK columns: each step of the loop loads the j-th row of every
    # entry of the tile still that long, so narrow tables still move wide tiles.
    entries = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < hidden
    lengths = tl.load(lengths_ptr + entries, mask=entries < count, other=0).to(tl.int32)
    live = lengths > 0
    index = tl.load(phrases_ptr + entries * slots, mask=live, other=0).to(tl.int64)
    rows = weight_ptr + index[:, None] * weight_stride + cols[None, :]
    first = tl.load(rows, mask=live[:, None] & inside[None, :], other=0.0).to(tl.float32)
    total = first
    for j in range(1, tl.max(lengths, axis=0)):
        live = j < lengths
        index = tl.load(phrases_ptr + entries * slots + j, mask=live, other=0).to(tl.int64)
        rows = weight_ptr + index[:, None] * weight_stride + cols[None, :]
        total += tl.load(rows, mask=live[:, None] & inside[None, :], other=0.0).to(tl.float32)
    mean = total / tl.maximum(lengths, 1).to(tl.float32)[:, None]
    out = entries[:, None] * hidden + cols[None, :]
    written = (entries < count)[:, None] & inside[None, :]
    tl.store(first_ptr + out, first.to(first_ptr.dtype.element_ty), mask=written)
    tl.store(mean_ptr + out, mean.to(mean_ptr.dtype.element_ty), mask=written)


@triton.jit
def _gather_backward_kernel(
    grad_ptr,
    grad_first_ptr,
    grad_mean_ptr,
    phrases_ptr,
    lengths_ptr,
    count,
    hidden,
    slots,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    entries = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = cols < hidden
    lengths = tl.load(lengths_ptr + entries, mask=entries < count, other=0).to(tl.int32)
    live = lengths > 0
    at = entries[:, None] * hidden + cols[None, :]
    tile = live[:, None] & inside[None, :]
    share = tl.load(grad_mean_ptr + at, mask=tile, other=0.0).to(tl.float32)
    share = share / tl.maximum(lengths, 1).to(tl.float32)[:, None]
    head = share + tl.load(grad_first_ptr + at, mask=tile, other=0.0).to(tl.float32)
    index = tl.load(phrases_ptr + entries * slots, mask=live, other=0).to(tl.int64)
    tl.atomic_add(grad_ptr + index[:, None] * hidden + cols[None, :], head, mask=tile, sem="relaxed")
    for j in range(1, tl.max(lengths, axis=0)):
        live = j < lengths
        index = tl.load(phrases_ptr + entries * slots + j, mask=live, other=0).to(tl.int64)
        tile = live[:, None] & inside[None, :]
        tl.atomic_add(grad_ptr + index[:, None] * hidden + cols[None, :], share, mask=tile, sem="relaxed")


GatherConfig = tuple[int, int, int]
"""(entries per program, columns per program, warps) of the gather kernels."""


def gather_config(hidden: int) -> GatherConfig:
    """The gather kernels' tile for a table ``hidden`` wide: 128 columns (fewer where 128 would
    leave more than an eighth of the lanes idle, down to 16) stacked over entries to 1,024
    values, 4 warps. Measured on an H100 (`benchmarks/kernels.py --tiles`, docs/benchmarks.md):
    8 entries x 128 columns x 4 warps reads at 99-103% of the copy rate on the three benchmarked
    shapes (576, 2048 and 4096 wide), where one entry a 1,024-lane block gave 72-95%."""
    block = min(max(triton.next_power_of_2(hidden), 16), 128)
    while block > 16 and triton.cdiv(hidden, block) * block * 7 > hidden * 8:
        block //= 2
    return 1024 // block, block, 4


def gather_forward(
    weight: torch.Tensor, phrases: torch.Tensor, lengths: torch.Tensor, config: GatherConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of `reference.gather_forward` (``config``: `gather_config`'s by default)."""
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
    rows, block, warps = config or gather_config(hidden)
    grid = (triton.cdiv(count, rows), triton.cdiv(hidden, block))
    _gather_forward_kernel[grid](
        weight,
        weight.stride(0),
        phrases,
        lengths,
        first,
        mean,
        count,
        hidden,
        slots,
        ROWS=rows,
        BLOCK=block,
        num_warps=warps,
    )
    return first, mean


def gather_backward(
    grad_first: torch.Tensor,
    grad_mean: torch.Tensor,
    phrases: torch.Tensor,
    lengths: torch.Tensor,
    num_rows: int,
    config: GatherConfig | None = None,
) -> torch.Tensor:
    """Triton version of `reference.gather_backward` (fp32 result)."""
    count, slots = phrases.shape
    hidden = grad_mean.shape[1]
    grad = torch.zeros(num_rows, hidden, dtype=torch.float32, device=grad_mean.device)
    if count == 0 or hidden == 0:
        return grad
    rows, block, warps = config or gather_config(hidden)
    grid = (triton.cdiv(count, rows), triton.cdiv(hidden, block))
    _gather_backward_kernel[grid](
        grad,
        grad_first.contiguous(),
        grad_mean.contiguous(),
        phrases.contiguous(),
        lengths.contiguous(),
        count,
        hidden,
        slots,
        ROWS=rows,
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
    block: int = 2048,
    warps: int = 8,
) -> torch.Tensor:
    """Triton version of `reference.ce_rows_reference` (a `reference.RowKernel`; ``block``
    columns a step and ``warps`` per row's program)."""
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
        BLOCK=block,
        num_warps=warps,
    )
    return losses
