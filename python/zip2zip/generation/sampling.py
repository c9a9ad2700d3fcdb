"""Sampling for the static decoding loop: temperature, top-k and top-p (nucleus), on the device.

`SamplingConfig` holds the settings; `sample_next` draws one id or code per row from ``[B, N]``
logits. The steps are those of transformers' ``generate(do_sample=True)``, in its order, so that
with the same logits and the same seed the two draw the same ids: the logits in float32, divided
by the temperature; every logit below the k-th largest set to ``-inf``; the smallest logits whose
probabilities sum to at most ``1 - top_p`` set to ``-inf`` (the largest one always kept); one
``torch.multinomial`` draw from the softmax. Every step has a static shape and no host
synchronisation, so it can be captured in a CUDA graph (random draws in a graph advance the
generator's offset at each replay).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zip2zip.errors import ModelInputError


@dataclass(frozen=True)
class SamplingConfig:
    """How the static loop picks each next id or code.

    Attributes:
        do_sample: False (default): greedy, the other fields are not used.
        temperature: divides the logits (> 0).
        top_k: keep the k largest logits (None or 0: all).
        top_p: keep the smallest set of largest logits whose probabilities sum to at least
            ``top_p`` (None or 1.0: all).

    Raises:
        ModelInputError: a temperature <= 0, a negative top_k, or top_p outside (0, 1].
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ModelInputError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ModelInputError(f"top_k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ModelInputError(f"top_p must be in (0, 1], got {self.top_p}")


def sample_next(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """``[B]`` ids drawn from ``[B, N]`` logits as `SamplingConfig` says (greedy: the argmax)."""
    if not config.do_sample:
        return logits.argmax(-1)
    scores = logits.float() / config.temperature
    if config.top_k:
        kth = torch.topk(scores, min(config.top_k, scores.shape[-1]), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1.0:
        ascending, order = torch.sort(scores, dim=-1)
        cumulative = ascending.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - config.top_p
        drop[..., -1] = False  # the largest logit stays
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(scores.softmax(-1), num_samples=1)[:, 0]
