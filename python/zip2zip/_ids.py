"""Conversion of user-supplied ids and codes to the arrays the Rust core reads.

The core reads contiguous int32 or int64 NumPy arrays without copying; anything else (lists,
tuples, torch CPU tensors, other integer dtypes, strided views) comes through here first. The
extension module calls :func:`as_id_array` itself, so every entry point accepts the same inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zip2zip._core import InvalidCodeError, InvalidIdError

_INT64_MAX = np.iinfo(np.int64).max


def as_id_array(values: Any, what: str = "ids") -> np.ndarray:
    """Return ``values`` as a one-dimensional contiguous int32 or int64 array.

    Args:
        values: a sequence of integers (list, tuple, NumPy array, CPU tensor).
        what: ``"ids"`` or ``"codes"``; names the argument in error messages.

    Raises:
        TypeError: ``values`` is a scalar or does not hold integers.
        InvalidIdError or InvalidCodeError: ``values`` is not one-dimensional.
        InvalidIdError, InvalidCodeError: a value does not even fit in int64.
    """
    error = InvalidCodeError if "code" in what else InvalidIdError
    try:
        array = np.asarray(values)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"{what} must be a flat sequence of integers ({exc})") from None
    if array.ndim == 0:
        raise TypeError(f"{what} must be a sequence of integers, got {type(values).__name__}")
    if array.ndim != 1:
        raise error(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind == "O":
        for position, value in enumerate(array):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{what} must be integers, got {type(value).__name__} at position {position}")
            if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
                raise error(f"{what[:-1]} {value} at position {position} is out of range")
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.dtype.itemsize == 8:
        too_large = np.flatnonzero(array > _INT64_MAX)
        if too_large.size:
            position = int(too_large[0])
            raise error(f"{what[:-1]} {int(array[position])} at position {position} is out of range")
    if array.dtype != np.int32 and array.dtype != np.int64:
        array = array.astype(np.int64)
    return np.ascontiguousarray(array)
