"""What the ``zip2zip`` commands share: the tokenizer they load."""

from __future__ import annotations

import os
from typing import Any

from zip2zip._core import CodebookConfig
from zip2zip.errors import UsageError
from zip2zip.sources import load_smollm2_tokenizer
from zip2zip.tokenizer import Zip2ZipTokenizer


def load_tokenizer(source: Any, max_codebook_size: int, max_subtokens: int) -> Zip2ZipTokenizer:
    """A hypertokenizer for the CLI: ``source`` is None (SmolLM2, offline) or anything
    :meth:`Zip2ZipTokenizer.from_base` accepts.

    Raises:
        UsageError: K or S is invalid, or the source does not give a fast tokenizer.
    """
    try:  # check K and S before the (slow) tokenizer load
        CodebookConfig(1, max_codebook_size, max_subtokens, [])
    except (ValueError, OverflowError) as error:
        raise UsageError(f"invalid codebook size or subtokens: {error}") from None
    if isinstance(source, str) and source.startswith((".", "/", "~")) and not os.path.exists(source):
        raise UsageError(f"tokenizer {source!r}: no such file or folder")
    try:
        if source is None:
            source = load_smollm2_tokenizer()
        return Zip2ZipTokenizer.from_base(source, max_codebook_size=max_codebook_size, max_subtokens=max_subtokens)
    except (OSError, ValueError, TypeError, ImportError, OverflowError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"cannot load tokenizer {source if isinstance(source, str) else 'SmolLM2'}: {message}"
        ) from None
