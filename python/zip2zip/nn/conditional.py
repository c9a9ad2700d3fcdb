"""The conditional head: the choice among the codes that start with the same base token, made
knowing that token.

A zip2zip model's logits rank base ids and hypertokens in one softmax. Read as two choices,
they first pick the next base token ``f`` (the *marginal*: base id ``f`` together with every
installed hypertoken that starts with it) and then, inside ``f``'s *group*, how much of the
text to write: ``f`` alone or one of its hypertokens. In the flat softmax the second choice is
made by the same hidden state for every group, although which continuation of ``f`` is likely
depends on ``f`` itself: the base model only sees ``f`` one step later.

The conditional head gives the second choice that look-ahead. For group ``f`` it scores the
group's members with a query ``q_f = h + W_2 gelu(W_1 [norm(h); norm(w_f)])`` (``w_f``: ``f``'s
LM-head row) instead of ``h``; the first choice keeps the flat logits' marginal. So

    log p(code c) = log p_flat(group f) + log softmax_{c' in group f}(q_f . row_c')[c]

with ``row`` the output row of a code (a hypertoken's output-encoder row, a base id's LM-head
row). ``W_2`` starts at zero, so a head just added leaves the model's distribution exactly as it
was: training starts from the flat model and only learns the correction.

Two ways to compute it, which agree (tested):

* :func:`grouped_log_probs`: the full ``[N, V + K]`` log-probabilities, for ``generate()`` and
  for scoring text; it needs every group's query (``[N, E, inner]``), so callers chunk long
  inputs, and what depends on the codebook alone (:func:`group_tables`) is computed once a row;
* :func:`target_correction`: for training, only the target's group at each position:
  ``log p_conditional(c | f) - log p_flat(c | f)``, added to the flat cross-entropy of the fused
  kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from zip2zip.errors import ConfigError

NEG_INF = float("-inf")


class ConditionalHead(nn.Module):
    """The look-ahead query of a group: ``q_f = h + W_2 gelu(W_1 [norm(h); norm(w_f)])``.

    Args:
        hidden_size: the base model's hidden size.
        inner_size: width of the hidden layer.

    Raises:
        ConfigError: a size is not positive.
    """

    def __init__(self, hidden_size: int, inner_size: int) -> None:
        super().__init__()
        if hidden_size < 1 or inner_size < 1:
            raise ConfigError(f"invalid ConditionalHead sizes: hidden_size={hidden_size}, inner_size={inner_size}")
        self.inner_size = inner_size
        self.norm_hidden = nn.LayerNorm(hidden_size)
        self.norm_first = nn.LayerNorm(hidden_size)
        self.from_hidden = nn.Linear(hidden_size, inner_size)
        self.from_first = nn.Linear(hidden_size, inner_size, bias=False)
        self.project_out = nn.Linear(inner_size, hidden_size)
        nn.init.zeros_(self.project_out.weight)
        nn.init.zeros_(self.project_out.bias)

    def hidden_part(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., inner]``: ``W_1``'s product with the normalised hidden states."""
        out: torch.Tensor = self.from_hidden(self.norm_hidden(hidden.to(self.from_hidden.weight.dtype)))
        return out

    def first_part(self, first_rows: torch.Tensor) -> torch.Tensor:
        """``[..., inner]``: ``W_1``'s product with the normalised LM-head rows of first tokens."""
        out: torch.Tensor = self.from_first(self.norm_first(first_rows.to(self.from_first.weight.dtype)))
        return out

    def query(self, hidden: torch.Tensor, first_rows: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]`` queries for hidden states and first-token rows of the same shape."""
        inner = F.gelu(self.hidden_part(hidden) + self.first_part(first_rows))
        out: torch.Tensor = hidden + self.project_out(inner).to(hidden.dtype)
        return out


def scatter_logsumexp(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, size]``: for each bucket ``v``, the log-sum-exp of ``values[n, e]`` over the ``e``
    with ``index[n, e] == v`` (``-inf`` for an empty bucket; ``-inf`` values count as absent)."""
    rows = values.shape[0]
    peak = values.new_full((rows, size), NEG_INF).scatter_reduce(1, index, values, "amax", include_self=True)
    shift = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.zeros_like(peak).scatter_add(1, index, (values - shift.gather(1, index)).exp())
    return torch.where(total > 0, total.log() + shift, peak.new_full((), NEG_INF))


class GroupTables(NamedTuple):
    """What `grouped_log_probs` needs of a codebook, computed once for all the positions that
    share it (each ``[1 or N, E, ...]``: one codebook for every position, or one per position)."""

    first: torch.Tensor  # [., E] each slot's first base id
    first_part: torch.Tensor  # [., E, inner] W_1's product with the normalised first-token rows
    hyper_out: torch.Tensor  # [., E, inner] W_2^T row: q . row = h . row + gelu(...) . hyper_out + hyper_bias
    hyper_bias: torch.Tensor  # [., E]
    stop_out: torch.Tensor  # [., E, inner] W_2^T w_f, for the group's own base id
    stop_bias: torch.Tensor  # [., E]


def group_tables(
    head: ConditionalHead, output_rows: torch.Tensor, lm_head: torch.Tensor, first_ids: torch.Tensor
) -> GroupTables:
    """The `GroupTables` of slots with ``output_rows`` (``[., E, H]``) and ``first_ids``
    (``[., E]``, any valid id where a slot is not installed), for an LM head ``[V, H]``."""
    weight = head.project_out.weight  # [H, inner]
    bias = head.project_out.bias.float()
    first = first_ids.long()
    first_rows = F.embedding(first, lm_head).to(weight.dtype)
    rows = output_rows.to(weight.dtype)
    return GroupTables(
        first,
        head.first_part(first_rows),
        (rows @ weight).float(),
        rows.float() @ bias,
        (first_rows @ weight).float(),
        first_rows.float() @ bias,
    )


def _through(inner: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``[N, E]``: each slot's ``inner . table`` (``table`` ``[1, E, inner]`` or ``[N, E, inner]``)."""
    if table.shape[0] == 1 and inner.shape[0] != 1:
        return torch.einsum("nei,ei->ne", inner, table[0])
    return torch.einsum("nei,nei->ne", inner, table)


def grouped_log_probs(
    head: ConditionalHead,
    hidden: torch.Tensor,
    base_logits: torch.Tensor,
    flat_hyper: torch.Tensor,
    tables: GroupTables,
) -> torch.Tensor:
    """The conditional head's ``[N, V + E]`` log-probabilities over codes.

    Args:
        head: the conditional head.
        hidden: ``[N, H]`` final hidden states.
        base_logits: ``[N, V]`` the flat logits of the base ids.
        flat_hyper: ``[N, E]`` the flat logits of the hypertoken slots, ``-inf`` where a slot is
            not installed at the position.
        tables: the codebook's `GroupTables` (`group_tables`), for every position or per position.

    Returns:
        ``[N, V + E]`` normalised log-probabilities (``-inf`` where ``flat_hyper`` is).
    """
    vocab = base_logits.shape[1]
    base_logits, flat_hyper = base_logits.float(), flat_hyper.float()
    installed = torch.isfinite(flat_hyper)
    first = tables.first.expand_as(flat_hyper)
    # Per slot, its group's query; the scores expanded through W_2 without forming [N, E, H] queries.
    inner = F.gelu(head.hidden_part(hidden)[:, None, :] + tables.first_part).float()  # [N, E, inner]
    extra_hyper = _through(inner, tables.hyper_out) + tables.hyper_bias
    extra_stop = _through(inner, tables.stop_out) + tables.stop_bias
    stop = base_logits.gather(1, first) + extra_stop  # [N, E]: q_f . w_f, the group's own base id
    conditional = (flat_hyper + extra_hyper).masked_fill(~installed, NEG_INF)
    stop = stop.masked_fill(~installed, NEG_INF)
    # The flat model's marginal: log p(group f) = LSE(base f, its hypertokens) - LSE(everything).
    total = torch.logsumexp(torch.cat([base_logits, flat_hyper], dim=1), dim=1, keepdim=True)
    flat_groups = torch.logaddexp(base_logits, scatter_logsumexp(flat_hyper, first, vocab))
    # Inside each group, the conditional softmax over the base id (its stop score) and hypertokens.
    stops = base_logits.new_full(base_logits.shape, NEG_INF).scatter_reduce(1, first, stop, "amax")
    within = torch.logaddexp(stops, scatter_logsumexp(conditional, first, vocab))
    grouped = torch.isfinite(stops)
    # log p(f alone) = log p(group f) + stop - LSE(group); a group without hypertokens is f alone.
    base_lp = torch.where(grouped, flat_groups - total + stops - within, base_logits - total)
    hyper_lp = (flat_groups - total - within).gather(1, first) + conditional
    return torch.cat([base_lp, hyper_lp.masked_fill(~installed, NEG_INF)], dim=1)


def target_correction(
    head: ConditionalHead,
    hidden: torch.Tensor,
    lm_head: torch.Tensor,
    output_rows: torch.Tensor,
    first_ids: torch.Tensor,
    targets: torch.Tensor,
    installed: torch.Tensor,
    vocab_size: int,
) -> torch.Tensor:
    """``[B, L]``: ``log p_conditional(c | f) - log p_flat(c | f)`` of each position's target code
    ``c`` inside its group ``f`` (0 where the group has no installed hypertoken). Subtracted from
    the flat cross-entropy it gives the conditional head's.

    Args:
        hidden: ``[B, L, H]`` the hidden states that predict ``targets``.
        lm_head: ``[V, H]``.
        output_rows: ``[B, E, H]``.
        first_ids: ``[B, E]`` each entry's first base id.
        targets: ``[B, L]`` codes, each a base id or an installed hypertoken (callers replace
            ignored targets by any base id and drop those positions).
        installed: ``[B, L]`` entries installed at each position.
        vocab_size: V.
    """
    entries = output_rows.shape[1]
    is_hyper = targets >= vocab_size
    slots = (targets - vocab_size).clamp(0, max(entries - 1, 0))
    if entries:
        first = torch.where(is_hyper, first_ids.gather(1, slots), targets)
    else:
        first = targets
    w_first = F.embedding(first, lm_head)  # [B, L, H]
    query = head.query(hidden, w_first)
    hidden, query, rows = hidden.float(), query.float(), output_rows.float()
    w_first = w_first.float()
    flat_stop = (hidden * w_first).sum(-1)
    cond_stop = (query * w_first).sum(-1)
    if not entries:
        return torch.zeros_like(flat_stop)
    member = (first_ids[:, None, :] == first[..., None]) & (
        torch.arange(entries, device=targets.device)[None, None, :] < installed[..., None]
    )
    flat_members = (hidden @ rows.transpose(1, 2)).masked_fill(~member, NEG_INF)
    cond_members = (query @ rows.transpose(1, 2)).masked_fill(~member, NEG_INF)
    flat_within = torch.logaddexp(flat_stop, flat_members.logsumexp(-1))
    cond_within = torch.logaddexp(cond_stop, cond_members.logsumexp(-1))
    flat_target = torch.where(is_hyper, flat_members.gather(2, slots[..., None])[..., 0], flat_stop)
    cond_target = torch.where(is_hyper, cond_members.gather(2, slots[..., None])[..., 0], cond_stop)
    return (cond_target - cond_within) - (flat_target - flat_within)
