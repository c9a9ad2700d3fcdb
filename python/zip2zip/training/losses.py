"""The extra loss terms of ``zip2zip train``, passed to the model's ``forward`` as loss terms
(`zip2zip.modeling.loss_terms`): each is made per batch from the batch's fields, and returns its
own value, which ``forward`` weighs into the loss and reports in ``output.loss_terms``.

* `DistillKL` (``--distill``): the base model reading the window's base tokens is a teacher at
  every code; the term is the KL divergence from it to the model's distribution over the *first
  base token* of the next code.
* `AdapterKL` (``--adapter-kl``): the KL divergence from the base model without its adapter to
  the base model with it, on plain base tokens; it keeps the adapter from moving base-token
  predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

from zip2zip.errors import TrainingError
from zip2zip.modeling.canonical import mask_non_canonical_, non_canonical_mask
from zip2zip.modeling.lora import base_only
from zip2zip.modeling.loss_terms import LossInputs, over_chunks
from zip2zip.modeling.marginal import first_token_marginal
from zip2zip.ops.reference import softcapped


@dataclass
class DistillKL:
    """KL(teacher || student's first-base-token marginal), averaged over the positions the code
    loss scores.

    The teacher is the base model (its adapter disabled) reading ``ids``, the base ids the
    window's codes stand for, taken at each code's last base token (``ends``); it keeps its
    ``top`` most likely next tokens, renormalised. The student's probability of a base token is
    that of its base id plus that of every installed hypertoken starting with it. With
    ``canonical_outputs`` on, both sides are conditioned on what canonical encoding may write
    next: the student's distribution is the masked one (`zip2zip.modeling.canonical`), and the
    teacher's kept tokens that end a child of the code just read get no probability (after code
    ``P``, the text cannot go on with a token ``t`` that makes ``P + t`` an entry: the encoder
    would have read ``t`` into the code), renormalised; a position where no kept token is left
    adds nothing. Without that, the teacher would pull the student's mass back onto the codes
    the mask takes away. Its pieces hold the flat logits anyway, so with the mask on the term
    also computes the code loss's canonical correction from them (``canonical_mass``: the mean
    log of the probability left on the allowed codes, as `zip2zip.modeling.canonical`
    `allowed_log_mass`), and ``forward`` adds that instead of computing its own (one pass of
    logits fewer a step). The mean over
    the code loss's targets makes a process's mean times its target count its sum, so DDP's
    normalisation by all processes' targets gives the whole batch's mean.

    Attributes:
        ids: ``[B, N]`` the base ids the codes stand for; ``mask`` 1 for real ones.
        ends: ``[B, L]`` the index in ``ids`` of each code's last base token.
        weight: the term's weight in the loss.
        top: the teacher's kept tokens.
        chunk: positions per piece (pieces are recomputed in backward: bounded memory).
    """

    ids: torch.Tensor
    mask: torch.Tensor | None
    ends: torch.Tensor
    weight: float = 1.0
    top: int = 32
    chunk: int = 64
    name: str = "distill_kl"
    # Set by each call with canonical_outputs on (see the class's docstring); forward reads it.
    canonical_mass: torch.Tensor | None = field(default=None, init=False, repr=False)
    shares_canonical_mass: ClassVar[bool] = True

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        model, hidden, head = inputs.model, inputs.hidden, inputs.head
        if self.top < 1:
            raise TrainingError(f"distill_top must be at least 1, got {self.top}")
        if self.ends.shape != inputs.input_ids.shape:
            raise TrainingError("distill ends must be [B, L] like input_ids")
        ids, ends, length = self.ids, self.ends, hidden.shape[1]
        if int(ends.max()) >= ids.shape[1] or int(ends.min()) < 0:
            raise TrainingError(f"distill ends must index the {ids.shape[1]} distill ids")
        vocab = model.config.vocab_size
        mask = torch.ones_like(ids) if self.mask is None else self.mask
        softcap = model._softcap()
        teacher_p, teacher_ids = self._teacher(model, ids, mask, ends, head, softcap, length, vocab)
        firsts = inputs.codebook[:, :, 0].long()  # [B, E] each entry's first base token
        canonical = bool(model.config.canonical_outputs) and inputs.codebook.shape[1] > 0
        lengths = inputs.codebook_lengths
        if canonical and lengths is None:
            raise TrainingError("the canonical distillation term needs the codebook's lengths")

        def piece(
            part: torch.Tensor,
            part_installed: torch.Tensor,
            p: torch.Tensor,
            where: torch.Tensor,
            part_codes: torch.Tensor,
        ) -> torch.Tensor:
            logits = model.hyper.logits(part, head, inputs.output_rows, part_installed, softcap).float()
            total = logits.logsumexp(-1, keepdim=True)
            if canonical:
                assert lengths is not None
                excluded = non_canonical_mask(part_codes, inputs.codebook, lengths, part_installed, vocab)
                # Out of place: ``total`` keeps the unmasked logits for its backward.
                logits = mask_non_canonical_(logits.clone(), excluded)
                p = p * ~excluded[..., :vocab].gather(-1, where)
                p = p / p.sum(-1, keepdim=True).clamp(min=1e-30)
                allowed = logits.logsumexp(-1, keepdim=True)
            else:
                allowed = total
            probs = (logits - allowed).exp()
            marginal = first_token_marginal(probs, firsts, vocab)
            student = marginal.gather(-1, where).clamp(min=1e-30).log()
            kl_rows = (p * (p.clamp(min=1e-30).log() - student)).sum(-1)
            # Row 0: the KL; row 1: the log of the probability the mask leaves (0 without it).
            return torch.stack([kl_rows, (allowed - total)[..., 0]])

        rows = over_chunks(
            piece,
            length - 1,
            self.chunk,
            hidden,
            inputs.installed,
            teacher_p,
            teacher_ids,
            inputs.input_ids,
        )
        if rows is None:
            self.canonical_mass = hidden.new_zeros((), dtype=torch.float32) if canonical else None
            return hidden.new_zeros(())
        weights = inputs.scored.to(rows.dtype)
        means = (rows * weights).sum((1, 2)) / weights.sum().clamp(min=1)
        self.canonical_mass = means[1] if canonical else None
        mean: torch.Tensor = means[0]
        return mean

    def _teacher(
        self,
        model: Any,
        ids: torch.Tensor,
        mask: torch.Tensor,
        ends: torch.Tensor,
        head: torch.Tensor,
        softcap: float | None,
        length: int,
        vocab: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's renormalised top probabilities and their ids, ``[B, L - 1, top]`` each."""
        with torch.no_grad(), base_only(model) as base:
            states = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            at_ends = states.gather(1, ends[:, :-1, None].expand(-1, -1, states.shape[-1]))
            del states
            top_p, top_ids = [], []
            for begin in range(0, length - 1, self.chunk):
                logits = F.linear(at_ends[:, begin : begin + self.chunk], head.to(at_ends.dtype)).float()
                if softcap is not None:
                    logits = softcapped(logits, softcap)
                values, indices = logits.topk(min(self.top, vocab), dim=-1)
                top_p.append(values.softmax(-1))  # renormalised over the kept tokens
                top_ids.append(indices)
            return torch.cat(top_p, 1), torch.cat(top_ids, 1)


@dataclass
class AdapterKL:
    """Mean over the tokens of ``ids`` (``mask``) of KL(base without adapter || base with it).

    Attributes:
        ids: ``[B', P]`` plain base ids; ``mask`` 1 for real ones.
        weight: the term's weight in the loss.
    """

    ids: torch.Tensor
    mask: torch.Tensor | None = None
    weight: float = 1.0
    name: str = "adapter_kl"

    def __call__(self, inputs: LossInputs) -> torch.Tensor:
        model = inputs.model
        if not model.has_adapter:
            raise TrainingError("the adapter KL term needs a LoRA adapter on the base model")
        mask = torch.ones_like(self.ids) if self.mask is None else self.mask
        with torch.no_grad(), base_only(model) as base:
            teacher = base(input_ids=self.ids, attention_mask=mask).logits.float().log_softmax(-1)
        student = model.base(input_ids=self.ids, attention_mask=mask).logits.float().log_softmax(-1)
        per_token = (teacher.exp() * (teacher - student)).sum(-1)
        weights = mask.to(per_token.dtype)
        mean: torch.Tensor = (per_token * weights).sum() / weights.sum().clamp(min=1)
        return mean
