"""The marginal first token: choose the next base token first, then the code that writes it.

A zip2zip model's next-code distribution gives every base token ``t`` a marginal probability:
that of the base id ``t`` plus that of every installed hypertoken whose phrase starts with ``t``
(what `zip2zip.training.losses.DistillKL` trains to match the base model's next-token
distribution). Greedy decoding over codes can pick a hypertoken whose first token is not the
most likely next token: the hypertoken's own probability beats the base id's, though the mass
of another first token, spread over its base id and its hypertokens, is larger.
`keep_marginal_first` keeps only the codes that start with the marginal's most likely token
(its base id and its hypertokens), so that decoding then chooses how much of the text to write
at once, but not where the text goes.

The safety valve (``output_hypertokens=False``) writes base ids only; by default it writes the
marginal's most likely token (`marginal_default`), not the most likely base id alone: a base id's
own probability leaves out what the model gives the phrases that start with it, so the plain
valve turns away from exactly the tokens the model expects most phrases to begin with (HumanEval,
stage 10: 9 problems plain, 11 with the marginal, the base 10; stage 17: 1 and 10).
"""

from __future__ import annotations

from typing import Any

import torch

from zip2zip.errors import ModelInputError


def marginal_default(config: Any, requested: bool | None, output_hypertokens: bool, share: float = 0.0) -> bool:
    """Whether decoding keeps the marginal's first token: on with hypertoken output under a share
    threshold above 0 (`min_share_default`), else ``requested`` when given, else the config's
    ``marginal_first_token`` when set, else on for the safety valve only."""
    if share > 0 and output_hypertokens:
        return True
    if requested is not None:
        return bool(requested)
    configured = getattr(config, "marginal_first_token", None)
    if configured is not None:
        return bool(configured)
    return not output_hypertokens


def first_ids(codebook: torch.Tensor, codebook_lengths: torch.Tensor) -> torch.Tensor:
    """``[B, E]`` each entry's first base id, -1 for empty slots."""
    return torch.where(codebook_lengths > 0, codebook[..., 0].long(), -1)


def first_token_marginal(probs: torch.Tensor, firsts: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[..., V]``: each base token's probability under ``probs`` ``[B, V + K]`` or ``[B, L, V +
    K]``: its base id's plus that of every entry of ``firsts`` ``[B, E]`` (``E <= K``; -1 for none)
    starting with it. Not in place, so gradients flow (the distillation term uses it)."""
    entries = firsts.shape[1]
    marginal = probs[..., :vocab_size]
    if not entries:
        return marginal
    hyper = probs[..., vocab_size : vocab_size + entries]
    index, real = firsts.clamp(min=0), (firsts >= 0).to(probs.dtype)
    if probs.dim() == 3:
        index = index[:, None, :].expand(-1, probs.shape[1], -1)
        real = real[:, None, :]
    return marginal.scatter_add(-1, index, hyper * real)


def keep_marginal_first(
    scores: torch.Tensor, firsts: torch.Tensor, vocab_size: int, min_share: float = 0.0
) -> torch.Tensor:
    """``scores`` ``[B, V + K]`` with ``-inf`` on every code that does not start with the row's
    most likely next base token under the marginal (base id plus the hypertokens starting with
    it; ``firsts`` ``[B, E]``, ``E <= K``, from `first_ids`; uninstalled slots must be ``-inf``
    already). With ``min_share`` > 0, a hypertoken is kept only when its probability is at least
    that share of the token's marginal (the model is that sure the text goes on as its phrase
    does); the base id always stays. Returns a new tensor; the kept codes' scores are unchanged."""
    entries = firsts.shape[1]
    probs = scores.float().softmax(-1)
    marginal = first_token_marginal(probs, firsts, vocab_size)
    token = marginal.argmax(-1)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep.scatter_(1, token[:, None], True)
    if entries:
        starts = firsts == token[:, None]
        if min_share > 0:
            total = marginal.gather(1, token[:, None])
            starts &= probs[:, vocab_size : vocab_size + entries] >= min_share * total
        keep[:, vocab_size : vocab_size + entries] = starts
    return scores.masked_fill(~keep, float("-inf"))


def min_share_default(config: Any, requested: float | None) -> float:
    """The hypertoken share threshold decoding applies with the marginal's first token:
    ``requested`` when given, else the config's ``hypertoken_min_share`` (0: none). Checked to
    lie in [0, 1]."""
    share = float(getattr(config, "hypertoken_min_share", 0.0) if requested is None else requested)
    if not 0.0 <= share <= 1.0:
        raise ModelInputError(f"hypertoken_min_share must lie in [0, 1], got {share}")
    return share
