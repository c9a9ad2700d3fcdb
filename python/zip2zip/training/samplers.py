"""The order of training windows: deterministic per seed and epoch, so that a resumed run sees
the same batches as the uninterrupted one."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from zip2zip.errors import TrainingError


class EpochOrder(torch.utils.data.Sampler[int]):
    """Window indices: a fresh permutation per epoch, from ``seed + epoch``, for ``epochs``
    epochs; deterministic, so that a resumed run sees the same order."""

    def __init__(self, size: int, epochs: int, seed: int) -> None:
        self.size, self.epochs, self.seed = size, epochs, seed

    def __iter__(self) -> Iterator[int]:
        for epoch in range(self.epochs):
            yield from np.random.default_rng(self.seed + epoch).permutation(self.size).tolist()

    def __len__(self) -> int:
        return self.size * self.epochs


class GroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of window indices with similar lengths (``--group-by-length``): each epoch's
    permutation (from ``seed + epoch``, as `EpochOrder`'s) is cut into pools of ``pool`` batches;
    a pool is sorted by length, longest first, and cut into batches; then the epoch's batches
    are shuffled. Every window comes once per epoch (the epoch's last batch may be short), and
    the order is deterministic, so that a resumed run sees the same batches. With
    ``--document-windows`` short chats then share batches with short chats instead of being
    padded to a full window.

    Raises:
        TrainingError: ``batch_size`` or ``pool`` below 1.
    """

    def __init__(
        self, lengths: Sequence[int] | np.ndarray, batch_size: int, epochs: int, seed: int, pool: int = 64
    ) -> None:
        if batch_size < 1 or pool < 1:
            raise TrainingError(f"batch_size and pool must be at least 1, got {batch_size} and {pool}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.epochs, self.seed, self.pool = batch_size, epochs, seed, pool

    def _epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + epoch)
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.pool
        full: list[list[int]] = []
        for begin in range(0, len(order), span):
            chunk = order[begin : begin + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            full.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        short = [b for b in full if len(b) < self.batch_size]  # at most one: the last pool's tail
        full = [b for b in full if len(b) == self.batch_size]
        return [full[i] for i in rng.permutation(len(full))] + short

    def __iter__(self) -> Iterator[list[int]]:
        for epoch in range(self.epochs):
            yield from self._epoch(epoch)

    def __len__(self) -> int:
        return self.epochs * math.ceil(len(self.lengths) / self.batch_size)
