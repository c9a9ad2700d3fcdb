"""zip2zip: inference-time adaptive vocabularies for language models.

An LZW codec over token ids turns repeated runs of base tokens into *hypertokens* while text is
read or generated. This package exposes the exact, streaming codec (Rust core, NumPy in and out).
"""

from zip2zip._core import (
    CodebookConfig,
    CodecState,
    ConfigError,
    InvalidCodeError,
    InvalidIdError,
    StateError,
    Zip2ZipError,
    __version__,
)
from zip2zip.codec import Encoding, decode_ids, decode_ids_batch, encode_ids, encode_ids_batch

__all__ = [
    "CodebookConfig",
    "CodecState",
    "ConfigError",
    "Encoding",
    "InvalidCodeError",
    "InvalidIdError",
    "StateError",
    "Zip2ZipError",
    "__version__",
    "decode_ids",
    "decode_ids_batch",
    "encode_ids",
    "encode_ids_batch",
]
