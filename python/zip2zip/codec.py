"""Whole-sequence encoding and decoding of token ids (the streaming API is :class:`CodecState`).

All work happens in the Rust core; these functions give its results a name and a shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zip2zip import _core
from zip2zip._core import CodebookConfig


@dataclass(frozen=True, eq=False)
class Encoding:
    """The result of encoding one sequence of base ids from an empty codebook.

    Attributes:
        codes: int32 ``[n_codes]``; base ids (< V) and hypertoken ids (V + slot).
        installed: int32 ``[n_codes]``; for each code, how many entries a decoder has installed
            after reading it. Predicting code ``i + 1`` may use base ids and the hypertokens
            ``V .. V + installed[i]``.
        codebook: int32 ``[n_entries, S]``; the phrase of entry ``V + row``, padded with 0.
        codebook_lengths: int32 ``[n_entries]``; the phrase length of each entry.
    """

    codes: np.ndarray
    installed: np.ndarray
    codebook: np.ndarray
    codebook_lengths: np.ndarray

    @property
    def num_entries(self) -> int:
        """Number of hypertokens the sequence created."""
        return int(self.codebook_lengths.shape[0])

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoding):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("codes", "installed", "codebook", "codebook_lengths")
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Encoding(codes={len(self)}, entries={self.num_entries})"


def encode_ids(config: CodebookConfig, ids: Sequence[int] | np.ndarray | Any) -> Encoding:
    """Encode base ids from an empty codebook (canonical greedy LZW).

    Args:
        config: the codebook configuration.
        ids: base ids, each in ``0 .. config.vocab_size``; a list, NumPy array or CPU tensor.

    Raises:
        InvalidIdError: an id is negative or not below ``vocab_size`` (the message names it and
            its position).
        TypeError: ``ids`` does not hold integers.
    """
    return Encoding(*_core.encode_ids(config, ids))


def read_codes(config: CodebookConfig, codes: Sequence[int] | np.ndarray | Any) -> Encoding:
    """The `Encoding` of a code stream as a decoder reads it from an empty codebook: each
    code's installed count and the entries it made. Unlike `encode_ids` (canonical codes of base
    ids), ``codes`` may be any valid stream, such as a prompt followed by generated codes.

    Raises:
        InvalidCodeError: a code is out of range or not known where it stands.
    """
    values = np.asarray(codes, dtype=np.int64).reshape(-1)
    state = _core.CodecState(config)
    installed = np.empty(len(values), dtype=np.int32)
    for position in range(len(values)):
        state.feed_codes(values[position : position + 1])
        installed[position] = state.installed
    table, lengths = state.phrases()
    return Encoding(values.astype(np.int32), installed, table.astype(np.int32), lengths.astype(np.int32))


def decode_ids(config: CodebookConfig, codes: Sequence[int] | np.ndarray | Any) -> np.ndarray:
    """Decode a complete code stream, starting from an empty codebook, to base ids (int32).

    To decode codes that continue earlier text, feed them to a :class:`CodecState` holding the
    state at their start.

    Raises:
        InvalidCodeError: a code is out of range or names a hypertoken that is not installed at
            that point (and is not the one valid not-yet-installed "KwKwK" code).
    """
    return _core.decode_ids(config, codes)


def encode_ids_batch(config: CodebookConfig, batch: Iterable[Sequence[int] | np.ndarray | Any]) -> list[Encoding]:
    """Encode many sequences in parallel (Rust threads, GIL released), each from empty.

    Raises:
        InvalidIdError: naming the sequence, the id and its position.
    """
    return [Encoding(*arrays) for arrays in _core.encode_batch(config, batch)]


def decode_ids_batch(config: CodebookConfig, batch: Iterable[Sequence[int] | np.ndarray | Any]) -> list[np.ndarray]:
    """Decode many complete code streams in parallel, each from an empty codebook.

    Raises:
        InvalidCodeError: naming the sequence, the code and its position.
    """
    return _core.decode_batch(config, batch)


def pad_rows(
    codes: Sequence[np.ndarray],
    installed: Sequence[np.ndarray],
    codebooks: Sequence[np.ndarray],
    lengths: Sequence[np.ndarray],
    length: int,
    width: int,
    pad_id: int,
    side: str,
) -> dict[str, np.ndarray]:
    """Rows of encodings as padded int64 arrays: ``input_ids``, ``attention_mask`` and
    ``installed`` ``[B, length]`` (padded on ``side`` with ``pad_id``, 0 and 0), ``codebook``
    ``[B, E, width]`` and ``codebook_lengths`` ``[B, E]`` (E: the most entries of a row; 0s after
    a row's own)."""
    batch = len(codes)
    entries = max((len(row) for row in lengths), default=0)
    out = {
        "input_ids": np.full((batch, length), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((batch, length), dtype=np.int64),
        "installed": np.zeros((batch, length), dtype=np.int64),
        "codebook": np.zeros((batch, entries, width), dtype=np.int64),
        "codebook_lengths": np.zeros((batch, entries), dtype=np.int64),
    }
    for row in range(batch):
        n = len(codes[row])
        span = slice(length - n, length) if side == "left" else slice(0, n)
        out["input_ids"][row, span] = codes[row]
        out["attention_mask"][row, span] = 1
        out["installed"][row, span] = installed[row]
        out["codebook"][row, : len(lengths[row])] = codebooks[row]
        out["codebook_lengths"][row, : len(lengths[row])] = lengths[row]
    return out
