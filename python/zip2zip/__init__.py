"""zip2zip: inference-time adaptive vocabularies for language models.

An LZW codec over token ids turns repeated runs of base tokens into *hypertokens* while text is
read or generated. This package holds the exact, streaming codec (Rust core, NumPy in and out),
`Zip2ZipTokenizer`, a drop-in hypertokenizer over any Hugging Face fast tokenizer, and the model
side: `Zip2ZipForCausalLM` (`zip2zip.modeling`), `StaticGenerator` and `Zip2ZipStreamer`
(`zip2zip.generation`). The model side is imported when first used, so that importing the codec
does not import torch.
"""

from typing import TYPE_CHECKING, Any

from zip2zip._core import (
    CodebookConfig,
    CodecBatch,
    CodecState,
    ConfigError,
    HyperTokenizer,
    InvalidCodeError,
    InvalidIdError,
    StateError,
    TextStream,
    TokenizerError,
    Zip2ZipError,
    __version__,
)
from zip2zip.codec import Encoding, decode_ids, decode_ids_batch, encode_ids, encode_ids_batch, read_codes
from zip2zip.errors import CheckpointError, EvaluationError, ModelInputError, TrainingError, UsageError
from zip2zip.tokenizer import Zip2ZipTokenizer

if TYPE_CHECKING:
    from zip2zip.generation import StaticGenerator, Zip2ZipStreamer
    from zip2zip.modeling import Zip2ZipConfig, Zip2ZipForCausalLM

# Imported on first use (they import torch and transformers): name -> module.
_LAZY = {
    "StaticGenerator": "zip2zip.generation",
    "Zip2ZipConfig": "zip2zip.modeling",
    "Zip2ZipForCausalLM": "zip2zip.modeling",
    "Zip2ZipStreamer": "zip2zip.generation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zip2zip' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CheckpointError",
    "CodebookConfig",
    "CodecBatch",
    "CodecState",
    "ConfigError",
    "Encoding",
    "EvaluationError",
    "HyperTokenizer",
    "InvalidCodeError",
    "InvalidIdError",
    "ModelInputError",
    "StaticGenerator",
    "StateError",
    "TextStream",
    "TokenizerError",
    "TrainingError",
    "UsageError",
    "Zip2ZipConfig",
    "Zip2ZipError",
    "Zip2ZipForCausalLM",
    "Zip2ZipStreamer",
    "Zip2ZipTokenizer",
    "__version__",
    "decode_ids",
    "decode_ids_batch",
    "encode_ids",
    "encode_ids_batch",
    "read_codes",
]
