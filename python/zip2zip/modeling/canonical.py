"""The codes that canonical encoding can never emit next, and a mask of them over the logits.

The encoder (docs/design.md, section 2) emits a phrase ``P`` only when ``P + t`` is not in the
dictionary, ``t`` being the next base id (or when ``P`` has ``S`` ids, or ``t`` is disabled: then
``P`` has no entry ``P + t`` either). So in a canonical code stream, a code whose phrase is ``P``
is never followed by a code whose first base id ``t`` makes ``P + t`` an entry the decoder
already has: the encoder would have read ``t`` into the phrase. Those entries are the *children*
of ``P`` (entries of one more id that start with ``P``), and the codes excluded after ``P`` are the
base ids that end them and every installed entry that starts with one of those ids.

A decoder knows all of this from the codes so far, so a model whose next-code distribution gives
those codes no probability (renormalising the rest) is still a model of canonical code streams,
and never worse on them: whatever probability the model put there was lost on every canonical
target. It is exact only where the stream so far is canonical: after a prompt's last code, whose
phrase a continued encoding would still extend, the first generated code must not be masked.

Training a model that will generate with the mask (``zip2zip train --canonical``) scores every
target under the masked distribution as well (`allowed_log_mass`): the training windows are
canonical encodings, so no target is ever excluded, and the model learns to put nothing on the
codes it will never be allowed to write instead of having it taken away afterwards.
"""

from __future__ import annotations

import torch


def code_phrases(
    codes: torch.Tensor, codebook: torch.Tensor, codebook_lengths: torch.Tensor, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The phrases of ``codes`` (``[B, L]``): ``[B, L, S]`` base ids (padded with -1) and their
    ``[B, L]`` lengths; a base id is its own phrase of length 1."""
    batch, length = codes.shape
    subtokens = codebook.shape[2]
    hyper = codes >= vocab_size
    slots = (codes - vocab_size).clamp(min=0, max=max(codebook.shape[1] - 1, 0))
    if codebook.shape[1]:
        rows = torch.arange(batch, device=codes.device)[:, None]
        phrases = torch.where(hyper[..., None], codebook[rows, slots], -1)
        lengths = torch.where(hyper, codebook_lengths[rows, slots], 1)
    else:
        phrases = codes.new_full((batch, length, subtokens), -1)
        lengths = torch.ones_like(codes)
    positions = torch.arange(subtokens, device=codes.device)
    phrases = torch.where(positions < lengths[..., None], phrases, -1)
    phrases[..., 0] = torch.where(hyper, phrases[..., 0], codes)
    return phrases, lengths


def non_canonical_mask(
    codes: torch.Tensor,
    codebook: torch.Tensor,
    codebook_lengths: torch.Tensor,
    installed: torch.Tensor,
    vocab_size: int,
) -> torch.Tensor:
    """``[B, L, V + E]``: True for the codes that canonical encoding cannot emit right after
    each position's code (see the module's docstring), among the base ids and the entries
    installed at that position.

    Args:
        codes: ``[B, L]`` codes (base ids below ``vocab_size``, hypertokens ``vocab_size + slot``).
        codebook: ``[B, E, S]`` phrases of each row's entries (padded).
        codebook_lengths: ``[B, E]`` their lengths (0 for padding entries).
        installed: ``[B, L]`` entries a decoder has after each code.
        vocab_size: ``V``.
    """
    batch, length = codes.shape
    entries, subtokens = codebook.shape[1], codebook.shape[2]
    mask = torch.zeros(batch, length, vocab_size + entries, dtype=torch.bool, device=codes.device)
    if entries == 0:
        return mask
    phrases, lengths = code_phrases(codes, codebook, codebook_lengths, vocab_size)
    ids = torch.arange(subtokens, device=codes.device)
    # child[b, i, s]: entry s is installed at position i, has one id more than code i's phrase and
    # starts with it.
    prefix = ids[None, None, :] < lengths[..., None]  # [B, L, S]
    same = (codebook[:, None, :, :] == phrases[:, :, None, :]) | ~prefix[:, :, None, :]
    child = same.all(-1) & (codebook_lengths[:, None, :] == lengths[..., None] + 1)
    child &= torch.arange(entries, device=codes.device)[None, None, :] < installed[..., None]
    # The id that ends each child: codebook[b, s, lengths[b, i]].
    at = lengths.clamp(max=subtokens - 1)[:, :, None, None].expand(batch, length, entries, 1)
    last = codebook[:, None, :, :].expand(batch, length, entries, subtokens).gather(3, at)[..., 0]
    base = torch.zeros(batch, length, vocab_size + 1, dtype=torch.bool, device=codes.device)
    base.scatter_(2, torch.where(child, last, vocab_size), True)  # column V collects the non-children
    mask[..., :vocab_size] = base[..., :vocab_size]
    first = codebook[:, :, 0].clamp(min=0, max=vocab_size - 1)  # [B, E]
    starts = base[..., :vocab_size].gather(2, first[:, None, :].expand(batch, length, entries))
    installed_slot = torch.arange(entries, device=codes.device)[None, None, :] < installed[..., None]
    mask[..., vocab_size:] = starts & installed_slot & (codebook_lengths[:, None, :] > 0)
    return mask


def mask_non_canonical_(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``logits`` with the codes ``mask`` (`non_canonical_mask`) excludes set to ``-inf``, in
    place; the logits may have more hypertoken slots (``V + K``) than the mask's ``V + E``."""
    logits[..., : mask.shape[-1]].masked_fill_(mask, float("-inf"))
    return logits


def allowed_log_mass(logits: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """``[..., L]``: the log of the probability ``logits`` (``[..., L, V + K]``, flat logits or
    log-probabilities) give the codes ``excluded`` (``[..., L, V + E]``, `non_canonical_mask`)
    does not name, ``LSE(allowed) - LSE(all)`` (at most 0; 0 where nothing is excluded).

    Adding it to a code's cross-entropy under ``logits`` gives the cross-entropy of the canonical
    distribution, which renormalises over the allowed codes. The excluded codes are whole groups
    (a base id and the hypertokens that start with it), so a conditional head, which keeps the
    flat model's group marginals, excludes the same mass as its flat logits."""
    logits = logits.float()
    allowed = logits.clone()
    mask_non_canonical_(allowed, excluded)
    out: torch.Tensor = allowed.logsumexp(-1) - logits.logsumexp(-1)
    return out
