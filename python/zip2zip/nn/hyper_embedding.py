"""The model-agnostic core of a zip2zip model: hypertoken rows, input embeddings, positions,
logits over ``[base vocabulary; installed hypertokens]`` and the loss (over logits, or fused and
chunked with `zip2zip.ops.hyper_cross_entropy`).

`Zip2ZipForCausalLM` composes these around any Hugging Face causal LM; they only need the base
model's input embedding and LM-head weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from zip2zip.errors import ConfigError
from zip2zip.nn.conditional import (
    ConditionalHead,
    GroupTables,
    group_tables,
    grouped_log_probs,
    target_correction,
)
from zip2zip.nn.hyper_encoder import HyperEncoder, MeanHyperEncoder
from zip2zip.ops import hyper_cross_entropy, hyper_gather
from zip2zip.ops.reference import IGNORE_INDEX, softcapped

PositionMode = Literal["base", "compressed"]
EncoderType = Literal["transformer", "mean"]
ENCODER_TYPES = ("transformer", "mean")


@dataclass
class RowTable:
    """Base rows as a table: ``weight[ids] * scale``. A `RowLookup` that also lets the "mean"
    encoder pool straight from the table with :func:`zip2zip.ops.hyper_gather`.

    Args:
        weight: ``[V, hidden]`` (an input embedding or an LM head).
        scale: a factor the embedding module applies to its rows (Gemma's), or ``None``.
    """

    weight: torch.Tensor
    scale: torch.Tensor | float | None = None

    @classmethod
    def of_embedding(cls, module: nn.Module) -> RowTable:
        """The table of an input embedding module, with the scale it applies (``embed_scale``)."""
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        return cls(weight, getattr(module, "embed_scale", None))

    def scaled(self, rows: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return rows
        scale = self.scale.to(self.weight.dtype) if isinstance(self.scale, torch.Tensor) else self.scale
        return rows * scale

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.scaled(F.embedding(ids, self.weight))


RowLookup = Callable[[torch.Tensor], torch.Tensor] | RowTable
Encoder = HyperEncoder | MeanHyperEncoder


class HyperEmbedding(nn.Module):
    """Input and output hyper-encoders plus the tensor plumbing around them.

    Args:
        vocab_size: V, rows of the base embedding; hypertoken ids are ``V + slot``.
        max_codebook_size: K, hypertoken slots per sequence; logits are ``V + K`` wide.
        max_subtokens: S.
        hidden_size: the base model's hidden size.
        tied: one encoder for input and output rows (default: two, untied).
        num_layers, num_heads, latent_size: passed to each :class:`HyperEncoder`.
        encoder_type: ``"transformer"`` (:class:`HyperEncoder`) or ``"mean"``
            (:class:`MeanHyperEncoder`, first token + a linear map of the mean).
    """

    def __init__(
        self,
        vocab_size: int,
        max_codebook_size: int,
        max_subtokens: int,
        hidden_size: int,
        *,
        tied: bool = False,
        num_layers: int = 2,
        num_heads: int = 4,
        latent_size: int | None = None,
        encoder_type: EncoderType = "transformer",
    ) -> None:
        super().__init__()
        if encoder_type not in ENCODER_TYPES:
            raise ConfigError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
        self.vocab_size = vocab_size
        self.max_codebook_size = max_codebook_size
        self.max_subtokens = max_subtokens

        def make() -> Encoder:
            if encoder_type == "mean":
                return MeanHyperEncoder(hidden_size)
            return HyperEncoder(
                hidden_size, max_subtokens, num_layers=num_layers, num_heads=num_heads, latent_size=latent_size
            )

        self.input_encoder: Encoder = make()
        self.output_encoder: Encoder = self.input_encoder if tied else make()
        self.hidden_size = hidden_size
        # The conditional head (`zip2zip.nn.conditional`), once `add_conditional_head` adds one.
        self.conditional: ConditionalHead | None = None

    def add_conditional_head(self, inner_size: int) -> ConditionalHead:
        """Add a conditional head of ``inner_size`` (zero output projection: the logits stay
        what they were until it trains), on the device and in the dtype of the encoders."""
        weight = next(self.output_encoder.parameters())
        self.conditional = ConditionalHead(self.hidden_size, inner_size).to(device=weight.device, dtype=weight.dtype)
        return self.conditional

    def encode_phrases(
        self, lookup: RowLookup, phrases: torch.Tensor, lengths: torch.Tensor, encoder: Encoder
    ) -> torch.Tensor:
        """``[n, hidden]`` rows of ``n`` real phrases (``phrases [n, S]``, ``lengths [n]`` in 1..S).

        A "mean" encoder given a `RowTable` pools straight from the table (`hyper_gather`);
        otherwise the sub-token rows are looked up and encoded."""
        if isinstance(encoder, MeanHyperEncoder) and isinstance(lookup, RowTable):
            first, mean = hyper_gather(lookup.weight, phrases, lengths, check=False)
            return encoder.pool(lookup.scaled(first), lookup.scaled(mean))
        rows: torch.Tensor = encoder(lookup(phrases.long()), lengths)
        return rows

    def encode_rows(
        self, lookup: RowLookup, codebook: torch.Tensor, lengths: torch.Tensor, encoder: Encoder
    ) -> torch.Tensor:
        """``[B, E, hidden]`` rows of every entry, computed over the real entries only.

        Args:
            lookup: base ids -> base rows: the model's input embedding module (so that any
                scaling it applies, as Gemma's does, applies to sub-tokens too) or a lookup in
                the LM-head weight.
            codebook: ``[B, E, S]`` phrases (padding sub-tokens may hold any valid id).
            lengths: ``[B, E]`` phrase lengths, 0 for padding entries.
        """
        batch, entries, _ = codebook.shape
        real = lengths > 0
        phrases = codebook[real].long()
        rows = self.encode_phrases(lookup, phrases, lengths[real], encoder)
        out = rows.new_zeros(batch, entries, rows.shape[-1])
        if phrases.shape[0]:
            out[real] = rows
        return out

    def input_embeddings(self, input_ids: torch.Tensor, lookup: RowLookup, hyper_rows: torch.Tensor) -> torch.Tensor:
        """``[B, L, hidden]``: base ids take ``lookup`` (the model's embedding), hyper ids their
        entry's row."""
        is_hyper = input_ids >= self.vocab_size
        embeds = lookup(torch.where(is_hyper, 0, input_ids))
        entries = hyper_rows.shape[1]
        if entries:  # a shape, not a value: no host synchronisation (CUDA graphs capture this)
            slots = (input_ids - self.vocab_size).clamp(0, entries - 1)
            gathered = torch.gather(hyper_rows, 1, slots[..., None].expand(-1, -1, hyper_rows.shape[-1]))
            embeds = torch.where(is_hyper[..., None], gathered.to(embeds.dtype), embeds)
        return embeds

    def position_ids(
        self,
        input_ids: torch.Tensor,
        codebook_lengths: torch.Tensor,
        attention_mask: torch.Tensor | None,
        mode: PositionMode = "base",
    ) -> torch.Tensor:
        """``[B, L]`` positions: ``"base"`` puts each code at the base-token index of its last
        token (RoPE distances stay in text units); ``"compressed"`` gives one per code. Padding
        (mask 0) positions get 0 and do not advance the count."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        if mode == "compressed":
            steps = mask
        elif mode == "base":
            is_hyper = input_ids >= self.vocab_size
            slots = (input_ids - self.vocab_size).clamp(min=0)
            if codebook_lengths.shape[1] == 0:
                hyper_len = torch.ones_like(input_ids)
            else:
                hyper_len = torch.gather(codebook_lengths.long(), 1, slots.clamp(max=codebook_lengths.shape[1] - 1))
            steps = torch.where(is_hyper, hyper_len, torch.ones_like(input_ids)) * mask
        else:
            raise ConfigError(f"position_mode must be 'base' or 'compressed', got {mode!r}")
        return ((steps.cumsum(dim=1) - 1) * mask).clamp(min=0)

    def logits(
        self,
        hidden: torch.Tensor,
        lm_head: torch.Tensor,
        hyper_rows: torch.Tensor,
        installed: torch.Tensor,
        softcap: float | None = None,
        first_ids: torch.Tensor | None = None,
        tables: GroupTables | None = None,
    ) -> torch.Tensor:
        """``[B, L, V + K]`` logits: base logits, then ``hidden @ hyper_rows.T`` for the
        entries installed at each position and ``-inf`` for every other slot. ``softcap``
        applies the base model's final logit soft-capping (Gemma) to both parts.

        With a conditional head and ``first_ids`` (``[B, E]``, each entry's first base id) they
        are the head's log-probabilities instead (`zip2zip.nn.conditional.grouped_log_probs`):
        the same marginal over first base tokens, each group's split computed knowing its
        token. Without ``first_ids`` they are the flat logits, whose marginal is the same (what
        the distillation term reads). ``tables``: the codebook's `GroupTables` (``[B, E, ...]``)
        when the caller keeps them from step to step (`StaticGenerator`), for a decoding step
        (``L == 1``); otherwise they are computed here."""
        base = F.linear(hidden, lm_head)  # exactly what the base model's LM head computes
        batch, length, _ = hidden.shape
        hyper = hidden.new_full((batch, length, self.max_codebook_size), float("-inf"))
        entries = hyper_rows.shape[1]
        if entries:
            scores = hidden @ hyper_rows.transpose(1, 2).to(hidden.dtype)
            if softcap is not None:
                scores = softcapped(scores, softcap)
            available = torch.arange(entries, device=hidden.device)[None, None, :] < installed[..., None]
            hyper[..., :entries] = scores.masked_fill(~available, float("-inf"))
        if softcap is not None:
            base = softcapped(base, softcap)
        if self.conditional is not None and first_ids is not None and entries:
            return self._conditional_logits(hidden, base, hyper, lm_head, hyper_rows, first_ids, tables)
        return torch.cat([base, hyper], dim=-1)

    def _conditional_logits(
        self,
        hidden: torch.Tensor,
        base: torch.Tensor,
        hyper: torch.Tensor,
        lm_head: torch.Tensor,
        hyper_rows: torch.Tensor,
        first_ids: torch.Tensor,
        tables: GroupTables | None = None,
    ) -> torch.Tensor:
        """`grouped_log_probs` of every position: one pass for a decoding step (``L == 1``),
        else row by row in chunks of positions that keep ``[n, E, inner]`` near 2^25 values."""
        assert self.conditional is not None
        batch, length, _ = hidden.shape
        entries = hyper_rows.shape[1]
        out = torch.full((batch, length, self.vocab_size + self.max_codebook_size), float("-inf"), device=hidden.device)
        head = self.conditional
        rows = hyper_rows.to(hidden.dtype)
        if length == 1:
            if tables is None:
                tables = group_tables(head, rows, lm_head, first_ids)
            out[:, 0, : self.vocab_size + entries] = grouped_log_probs(
                head, hidden[:, 0], base[:, 0], hyper[:, 0, :entries], tables
            )
            return out
        chunk = max(1, 2**25 // (entries * head.inner_size))
        for row in range(batch):
            tables = group_tables(head, rows[row : row + 1], lm_head, first_ids[row : row + 1])
            for start in range(0, length, chunk):
                part = slice(start, min(start + chunk, length))
                out[row, part, : self.vocab_size + entries] = grouped_log_probs(
                    head, hidden[row, part], base[row, part], hyper[row, part, :entries], tables
                )
        return out

    def conditional_correction(
        self,
        hidden: torch.Tensor,
        lm_head: torch.Tensor,
        hyper_rows: torch.Tensor,
        first_ids: torch.Tensor,
        labels: torch.Tensor,
        installed: torch.Tensor,
        scored: torch.Tensor,
    ) -> torch.Tensor:
        """The mean over ``scored`` targets (``[B, L - 1]``, `zip2zip.modeling.loss_terms.scored_targets`)
        of ``log p_conditional(c | f) - log p_flat(c | f)``: the flat cross-entropy
        (:meth:`fused_loss`) minus this is the conditional head's."""
        assert self.conditional is not None
        correction = target_correction(
            self.conditional,
            hidden[:, :-1],
            lm_head.to(hidden.dtype),
            hyper_rows.to(hidden.dtype),
            first_ids,
            torch.where(scored, labels[:, 1:], 0),
            installed[:, :-1],
            self.vocab_size,
        )
        return (correction * scored).sum() / scored.sum().clamp(min=1)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, installed: torch.Tensor) -> torch.Tensor:
        """Next-code cross-entropy. Position t predicts label t+1; a target that is a hypertoken
        not yet installed after code t (the rare KwKwK code) is ignored, as is ``-100``."""
        logits = logits[:, :-1]
        targets = labels[:, 1:].clone()
        not_installed = targets >= self.vocab_size + installed[:, :-1]
        targets[not_installed & (targets != IGNORE_INDEX)] = IGNORE_INDEX
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )

    def fused_loss(
        self,
        hidden: torch.Tensor,
        lm_head: torch.Tensor,
        hyper_rows: torch.Tensor,
        labels: torch.Tensor,
        installed: torch.Tensor,
        softcap: float | None = None,
    ) -> torch.Tensor:
        """The same loss as :meth:`loss` over the logits :meth:`logits` would give, computed by
        :func:`zip2zip.ops.hyper_cross_entropy` in chunks without materialising them."""
        device = hidden.device.type
        if torch.is_autocast_enabled(device):  # what F.linear would compute under autocast
            dtype = torch.get_autocast_dtype(device)
            hidden, lm_head = hidden.to(dtype), lm_head.to(dtype)
        elif hidden.dtype != lm_head.dtype:
            hidden = hidden.to(lm_head.dtype)
        return hyper_cross_entropy(
            hidden[:, :-1], lm_head, hyper_rows, labels[:, 1:], installed[:, :-1].to(labels.dtype), softcap=softcap
        )
