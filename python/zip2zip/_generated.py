"""What ``decode()`` needs to read the generated part of a recent ``generate()`` output.

A generated suffix decodes only with the codebook state after its prompt. transformers'
``pipeline("text-generation")`` decodes ``sequence[prompt_length:]`` (as a list) with no state,
so the zip2zip model's ``generate()`` records, for each of its last rows, the generated codes and
the prompt's codes; ``decode(codes)`` without a state, given codes that hold a hypertoken and are
exactly the generated part of a recorded row, reads them after that row's prompt. (Base ids read
the same in every state: codes without a hypertoken need no lookup.) No torch import here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from zip2zip._core import CodebookConfig, CodecState

KEPT_ROWS = 64  # generated rows remembered (the newest)

_rows: OrderedDict[tuple[CodebookConfig, bytes], np.ndarray] = OrderedDict()
_lock = threading.Lock()


def remember(config: CodebookConfig, sequences: np.ndarray, prompt_width: int, starts: list[int]) -> None:
    """Record the rows of a ``generate()`` output ``[B, T]`` (int64): codes from ``prompt_width``
    on are generated; row ``r``'s prompt is ``sequences[r, starts[r]:prompt_width]``."""
    with _lock:
        for row, start in zip(sequences, starts):
            key = (config, np.ascontiguousarray(row[prompt_width:], dtype=np.int64).tobytes())
            _rows[key] = np.array(row[start:prompt_width], dtype=np.int64)
            _rows.move_to_end(key)
        while len(_rows) > KEPT_ROWS:
            _rows.popitem(last=False)


def state_before(codes: Any, config: CodebookConfig) -> CodecState | None:
    """The state after the prompt of a recorded row whose generated codes are ``codes``; None
    when ``codes`` hold no hypertoken or are no recorded row's generated part."""
    values = np.asarray(codes, dtype=np.int64).reshape(-1)
    if not len(values) or int(values.max()) < config.vocab_size:
        return None
    with _lock:
        prompt = _rows.get((config, values.tobytes()))
    if prompt is None:
        return None
    state = CodecState(config)
    state.feed_codes(prompt)
    return state
