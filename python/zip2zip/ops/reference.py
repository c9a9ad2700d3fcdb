"""Pure-torch references of the zip2zip ops: the CPU implementation and what the Triton
kernels are tested against.

Both ops follow the same contract as their kernels:

* `gather_forward` / `gather_backward`: ``phrases [N, S]`` (ids of each entry, padding after
  ``lengths[n]`` ignored, whatever its value) and ``lengths [N]`` in ``0..S`` give the first
  row and the mean row of each entry (both zero for an entry of length 0), with fp32
  accumulation; the gradient is a scatter-add into the table.
* `cross_entropy_forward`: next-code cross-entropy over ``[base logits; hyper logits]`` computed
  a chunk of positions at a time, with the gradients of the mean loss produced in the same pass
  (so backward is a scaling), never holding more than one chunk of logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

# A function that turns one chunk of logits into per-row losses and writes the gradient of
# ``scale * sum(losses)`` into the logits in place:
# (base_logits [c, V], hyper_logits [c, E], targets [c], available [c], scale, softcap) -> losses [c]
RowKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def gather_forward(
    weight: torch.Tensor, phrases: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first [N, H], mean [N, H])`` in ``weight``'s dtype."""
    slots = phrases.shape[1]
    real = torch.arange(slots, device=phrases.device)[None, :] < lengths[:, None]
    ids = torch.where(real, phrases, torch.zeros_like(phrases)).long()
    rows = F.embedding(ids, weight).float() * real[..., None]
    mean = rows.sum(dim=1) / lengths.clamp(min=1)[:, None].float()
    first = rows[:, 0] if slots else mean
    return first.to(weight.dtype).contiguous(), mean.to(weight.dtype).contiguous()


def gather_backward(
    grad_first: torch.Tensor, grad_mean: torch.Tensor, phrases: torch.Tensor, lengths: torch.Tensor, num_rows: int
) -> torch.Tensor:
    """``[num_rows, H]`` fp32 gradient of the table."""
    slots = phrases.shape[1]
    real = torch.arange(slots, device=phrases.device)[None, :] < lengths[:, None]
    per_slot = grad_mean.float()[:, None, :] / lengths.clamp(min=1)[:, None, None].float()
    per_slot = per_slot.expand(-1, slots, -1).clone()
    if slots:
        per_slot[:, 0] += grad_first.float()
    grad = torch.zeros(num_rows, grad_mean.shape[1], dtype=torch.float32, device=grad_mean.device)
    grad.index_add_(0, phrases[real].long(), per_slot[real])
    return grad


def softcapped(x: torch.Tensor, softcap: float) -> torch.Tensor:
    """The base model's final logit soft-capping (Gemma): ``softcap * tanh(x / softcap)``; ``x``
    itself for a cap of 0 or less."""
    return x if softcap <= 0 else torch.tanh(x / softcap) * softcap


def ce_rows_reference(
    base: torch.Tensor,
    hyper: torch.Tensor,
    targets: torch.Tensor,
    available: torch.Tensor,
    scale: float,
    softcap: float,
) -> torch.Tensor:
    """The row kernel in torch (see `RowKernel`)."""
    vocab, entries = base.shape[1], hyper.shape[1]
    logits = softcapped(torch.cat([base, hyper], dim=1).float(), softcap)
    usable = torch.arange(vocab + entries, device=base.device)[None, :] < (vocab + available)[:, None]
    logits = logits.masked_fill(~usable, float("-inf"))
    lse = torch.logsumexp(logits, dim=1)
    losses = lse - logits.gather(1, targets[:, None].long())[:, 0]
    grad = torch.exp(logits - lse[:, None])
    grad[torch.arange(len(targets), device=base.device), targets.long()] -= 1.0
    if softcap > 0:
        grad = grad * (1 - (logits / softcap) ** 2)
    grad = (grad * scale).masked_fill(~usable, 0.0)
    base.copy_(grad[:, :vocab])
    hyper.copy_(grad[:, vocab:])
    return losses


def cross_entropy_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    available: torch.Tensor,
    softcap: float,
    chunk_size: int,
    need_hidden_grad: bool,
    need_weight_grad: bool,
    need_rows_grad: bool,
    row_kernel: RowKernel = ce_rows_reference,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradients, a chunk of positions at a time.

    Args:
        hidden: ``[B, T, H]`` final hidden states of the positions that predict.
        weight: ``[V, H]`` LM head.
        rows: ``[B, E, H]`` output rows of each sequence's hypertokens.
        targets: ``[B, T]`` target codes; ``-100`` and hypertokens not yet available are ignored.
        available: ``[B, T]`` hypertokens usable at each position (installed counts).
        softcap: final-logit soft-capping (0: none).
        chunk_size: positions per chunk.

    Returns:
        ``(loss, grad_hidden, grad_weight, grad_rows)``: the loss is a 0-d fp32 tensor (0 when no
        target counts); gradients are of that loss, in the inputs' dtypes (empty when not needed).
    """
    vocab = weight.shape[0]
    valid = (targets != IGNORE_INDEX) & (targets >= 0) & (targets < vocab + available)
    # Every counted position at once, and how many per sequence: two synchronisations in all,
    # not one per sequence.
    positions = valid.reshape(-1).nonzero()[:, 0] % max(valid.shape[1], 1)
    per_sequence = valid.sum(dim=1).tolist()
    count = sum(per_sequence)
    grad_hidden = torch.zeros_like(hidden) if need_hidden_grad else hidden.new_empty(0)
    grad_weight = torch.zeros_like(weight) if need_weight_grad else weight.new_empty(0)
    grad_rows = torch.zeros_like(rows) if need_rows_grad else rows.new_empty(0)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    if count == 0:
        return total, grad_hidden, grad_weight, grad_rows
    scale = 1.0 / count
    for b, sequence_positions in enumerate(torch.split(positions, per_sequence)):
        seq_rows = rows[b]
        for start in range(0, len(sequence_positions), chunk_size):
            at = sequence_positions[start : start + chunk_size]
            h = hidden[b, at]
            base = h @ weight.T  # what the LM head computes, in the model's dtype
            hyper = h @ seq_rows.T
            losses = row_kernel(base, hyper, targets[b, at], available[b, at].to(targets.dtype), scale, softcap)
            total += losses.sum()
            if need_hidden_grad:
                grad_hidden[b, at] = (base @ weight + hyper @ seq_rows).to(hidden.dtype)
            if need_weight_grad:
                grad_weight.addmm_(base.T, h)
            if need_rows_grad:
                grad_rows[b].addmm_(hyper.T, h)
    return total * scale, grad_hidden, grad_weight, grad_rows
