"""Type stubs for the compiled codec (checked against the module with mypy.stubtest)."""

from collections.abc import Iterable, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "CodebookConfig",
    "CodecBatch",
    "CodecState",
    "ConfigError",
    "InvalidCodeError",
    "InvalidIdError",
    "StateError",
    "Zip2ZipError",
    "__version__",
    "decode_batch",
    "decode_ids",
    "encode_batch",
    "encode_ids",
    "HyperTokenizer",
    "TextStream",
    "TokenizerError",
]

_Int32Array = npt.NDArray[np.int32]
_IdsLike = Any

class Zip2ZipError(ValueError):
    """Base class of every zip2zip codec error (a ValueError)."""

class InvalidIdError(Zip2ZipError):
    """A base id is negative or not below vocab_size."""

class InvalidCodeError(Zip2ZipError):
    """A code is out of range or not a hypertoken the state knows."""

class ConfigError(Zip2ZipError):
    """A codebook configuration that the codec cannot honour."""

class StateError(Zip2ZipError):
    """Serialized codec state that is truncated or inconsistent, or a CodecState in use by another thread."""

class TokenizerError(Zip2ZipError):
    """The base tokenizer failed, or its JSON did not load."""

@final
class CodebookConfig:
    """Fixed parameters of a codebook.

    Args:
        vocab_size: V, the number of base ids (rows of the model's embedding).
        max_codebook_size: K, the most entries a codebook may hold (then it freezes).
        max_subtokens: S >= 1, the longest phrase one hypertoken may stand for.
        disabled_ids: base ids that never join a hypertoken (special tokens, pad, digits).

    Raises:
        ConfigError: V == 0, S == 0 or S > 256, V + K > 2**31 - 1, or a disabled id >= V.
    """

    def __new__(
        cls,
        vocab_size: int,
        max_codebook_size: int = 2048,
        max_subtokens: int = 4,
        disabled_ids: Iterable[int] | None = None,
    ) -> CodebookConfig: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def max_codebook_size(self) -> int: ...
    @property
    def max_subtokens(self) -> int: ...
    @property
    def disabled_ids(self) -> tuple[int, ...]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...

@final
class CodecState:
    """Streaming codebook state: one LZW machine that encodes base ids and tracks codes.

    Tracking expands each code to base ids and feeds them through the encoder's machine, so the
    codebook depends only on the text, never on how it was cut into codes.
    """

    def __new__(cls, config: CodebookConfig) -> CodecState: ...
    @property
    def config(self) -> CodebookConfig: ...
    @property
    def installed(self) -> int:
        """Entries installed so far."""
    @property
    def next_id(self) -> int:
        """The id the next entry will get (vocab_size + installed)."""
    @property
    def is_full(self) -> bool:
        """Whether the codebook holds max_codebook_size entries (it is then frozen)."""
    @property
    def pending_code(self) -> int | None:
        """Code of the open phrase P: what finish() would emit."""
    @property
    def pending(self) -> _Int32Array:
        """Base ids of the open phrase P."""
    def feed_ids(self, ids: _IdsLike) -> _Int32Array:
        """Encode base ids; return the codes they complete. The last phrase stays open.

        Raises:
            InvalidIdError: an id is out of range; the state is then unchanged.
        """
    def finish(self) -> _Int32Array:
        """End the text: emit the open phrase's code (if any) and close it."""
    def feed_codes(self, codes: _IdsLike) -> tuple[_Int32Array, _Int32Array]:
        """Track codes: return their base ids and the ids of the entries installed.

        Raises:
            InvalidCodeError: a code is out of range or unknown; the state is then unchanged.
        """
    def phrase(self, code: int) -> _Int32Array:
        """Base ids of a base id or an installed entry.

        Raises:
            InvalidCodeError: the code is out of range or not installed.
        """
    def phrases(
        self, start: int = 0, end: int | None = None, pad: int = 0
    ) -> tuple[npt.NDArray[np.int32], _Int32Array]:
        """Phrases of entries start..end as an [n, max_subtokens] array padded with pad, and lengths."""
    def reset(self) -> None:
        """Forget every entry and the open phrase."""
    def copy(self) -> CodecState: ...
    def __copy__(self) -> CodecState: ...
    def __deepcopy__(self, memo: Any, /) -> CodecState: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> CodecState:
        """Restore a state from to_bytes().

        Raises:
            StateError: the bytes are truncated or describe an impossible state.
        """
    def __eq__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...

@final
class CodecBatch:
    """Codec states of a batch of generated sequences, stepped together: `step` reads one code
    into every row in one call and returns what a decoding step needs. All or nothing: when a
    code cannot be read, every row is left as it was.

    Raises:
        ConfigError: the states have different codebook configs.
    """

    def __new__(cls, states: Sequence[CodecState]) -> CodecBatch: ...
    def __len__(self) -> int: ...
    def state(self, index: int) -> CodecState:
        """A copy of row ``index``'s state.

        Raises:
            IndexError: no such row.
        """
    @property
    def installed(self) -> _Int32Array:
        """Entries installed in each row."""
    def step(
        self, codes: _IdsLike
    ) -> tuple[_Int32Array, _Int32Array, _Int32Array, _Int32Array, npt.NDArray[np.int32], _Int32Array]:
        """Read ``codes[i]`` into row ``i``. Returns each row's phrase length and installed
        count, then for every entry created (row by row): its row, its slot (id - V), its
        phrase as an ``[n, max_subtokens]`` table padded with 0, and its length.

        Raises:
            ValueError: not one code per row.
            InvalidCodeError: a code cannot be read (the message names its row); no row changes.
        """
    def __repr__(self) -> str: ...

def encode_ids(
    config: CodebookConfig, ids: _IdsLike
) -> tuple[_Int32Array, _Int32Array, npt.NDArray[np.int32], _Int32Array]: ...
def decode_ids(config: CodebookConfig, codes: _IdsLike) -> _Int32Array: ...
def encode_batch(
    config: CodebookConfig, sequences: Iterable[_IdsLike]
) -> list[tuple[_Int32Array, _Int32Array, npt.NDArray[np.int32], _Int32Array]]: ...
def decode_batch(config: CodebookConfig, sequences: Iterable[_IdsLike]) -> list[_Int32Array]: ...

_TextEncodingArrays = tuple[_Int32Array, tuple[_Int32Array, _Int32Array, npt.NDArray[np.int32], _Int32Array]]

@final
class HyperTokenizer:
    """A base tokenizer (its tokenizer.json) and a codebook config: text to codes and back in Rust.

    Raises:
        TokenizerError: the JSON does not load.
        ConfigError: the tokenizer has ids not below config.vocab_size.
    """

    def __new__(cls, tokenizer_json: str, config: CodebookConfig) -> HyperTokenizer: ...
    @property
    def config(self) -> CodebookConfig: ...
    @property
    def tokenizer_json(self) -> str: ...
    def encode(self, text: str, add_special_tokens: bool = True) -> _TextEncodingArrays:
        """(base ids, (codes, installed, phrases, lengths)) of one text, from an empty codebook."""
    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[_TextEncodingArrays]:
        """encode() of many texts in parallel, with the GIL released."""
    def decode_base(self, ids: _IdsLike, skip_special_tokens: bool = False) -> str:
        """The text of base ids.

        Raises:
            InvalidIdError: an id is not below vocab_size.
        """
    def decode(self, codes: _IdsLike, state: CodecState | None = None, skip_special_tokens: bool = False) -> str:
        """The text of codes read from state (not modified; None: an empty codebook).

        Raises:
            InvalidCodeError: a code the state cannot read.
        """
    def decode_batch(self, sequences: Iterable[_IdsLike], skip_special_tokens: bool = False) -> list[str]: ...
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...

@final
class TextStream:
    """Streaming detokenizer: step(codes) returns the text they complete, never half a character."""

    def __new__(
        cls, tokenizer: HyperTokenizer, state: CodecState | None = None, skip_special_tokens: bool = False
    ) -> TextStream: ...
    def step(self, codes: _IdsLike) -> str:
        """Read codes; return the text they complete (possibly empty).

        Raises:
            InvalidCodeError: a code the state cannot read (nothing is consumed).
        """
    def flush(self) -> str:
        """End of stream: the text still held back (a trailing partial character)."""
    @property
    def state(self) -> CodecState:
        """A copy of the codebook state after the codes read so far."""
