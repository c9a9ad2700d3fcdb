"""zip2zip: inference-time adaptive vocabularies for language models.

An LZW codec over token ids turns repeated runs of base tokens into *hypertokens* while text is
read or generated. This package holds the exact, streaming codec (Rust core, NumPy in and out)
and `Zip2ZipTokenizer`, a drop-in hypertokenizer over any Hugging Face fast tokenizer.
"""

from zip2zip._core import (
    CodebookConfig,
    CodecBatch,
    CodecState,
    ConfigError,
    InvalidCodeError,
    InvalidIdError,
    HyperTokenizer,
    StateError,
    TextStream,
    TokenizerError,
    Zip2ZipError,
    __version__,
)
from zip2zip.codec import Encoding, decode_ids, decode_ids_batch, encode_ids, encode_ids_batch
from zip2zip.tokenizer import Zip2ZipTokenizer

__all__ = [
    "CodebookConfig",
    "CodecBatch",
    "CodecState",
    "ConfigError",
    "Encoding",
    "HyperTokenizer",
    "InvalidCodeError",
    "InvalidIdError",
    "StateError",
    "TextStream",
    "TokenizerError",
    "Zip2ZipError",
    "Zip2ZipTokenizer",
    "__version__",
    "decode_ids",
    "decode_ids_batch",
    "encode_ids",
    "encode_ids_batch",
]
