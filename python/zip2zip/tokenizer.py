"""`Zip2ZipTokenizer`: a drop-in hypertokenizer over any Hugging Face fast tokenizer.

Text goes to codes in Rust in one call (the base `tokenizers` tokenizer, then the LZW codec),
batched in parallel with the GIL released. Everything else a transformers user expects (chat
templates, special tokens, `save_pretrained`) is delegated to the base tokenizer.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zip2zip import _core
from zip2zip._core import CodebookConfig, CodecState, ConfigError, TextStream
from zip2zip._generated import state_before
from zip2zip.codec import Encoding, encode_ids, pad_rows
from zip2zip.errors import UsageError
from zip2zip.folders import (
    BASE_TOKENIZER_FOLDER,
    CONFIG_FORMAT_VERSION,
    CONFIG_NAME,
    FOLDER_TOKENIZER_CONFIG,
    base_tokenizer_folder,
    check_folder_configs_agree,
    read_codebook_config,
)
from zip2zip.sources import as_fast_tokenizer, default_disabled_ids

if TYPE_CHECKING:
    from transformers import BatchEncoding

# transformers' own annotations are looser than mypy --strict wants (untyped constructors,
# unions of backends); the base tokenizer is typed as Any here and checked at run time.
BaseTokenizer = Any

TextInput = str
Codes = Sequence[int] | np.ndarray


def _largest_id(base: BaseTokenizer) -> int:
    vocab = base.backend_tokenizer.get_vocab(with_added_tokens=True)
    return max(vocab.values()) if vocab else -1


class Zip2ZipTokenizer:
    """A hypertokenizer: the base tokenizer's ids compressed into LZW codes.

    Create one with :meth:`from_base` or :meth:`from_pretrained`. Calling it works like calling
    a transformers tokenizer, and the result also carries what a zip2zip model needs: the
    codebook of each sequence and the per-code installed counts.

    Attributes:
        base: the transformers fast tokenizer underneath.
        config: the :class:`CodebookConfig` (V, K, S, disabled ids).
    """

    def __init__(
        self,
        base: BaseTokenizer,
        config: CodebookConfig,
        *,
        protect_digits: bool = True,
        extra_disabled_ids: Iterable[int] = (),
    ) -> None:
        largest = _largest_id(base)
        if largest >= config.vocab_size:
            raise ConfigError(f"the tokenizer has ids up to {largest} but vocab_size is {config.vocab_size}")
        self.base = base
        self.config = config
        self.protect_digits = protect_digits
        self.extra_disabled_ids = tuple(sorted(set(int(i) for i in extra_disabled_ids)))
        self._hyper = _core.HyperTokenizer(base.backend_tokenizer.to_str(), config)
        self.padding_side: str = getattr(base, "padding_side", "right")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_base(
        cls,
        source: Any,
        *,
        max_codebook_size: int = 2048,
        max_subtokens: int = 4,
        vocab_size: int | None = None,
        protect_digits: bool = True,
        extra_disabled_ids: Iterable[int] = (),
    ) -> Zip2ZipTokenizer:
        """Wrap a base tokenizer.

        Args:
            source: a hub id (via huggingface_hub; honours ``HF_HUB_OFFLINE`` and the cache), a
                local folder, a ``tokenizer.json`` path, a GGUF file, a ``tokenizers.Tokenizer``
                or a transformers fast tokenizer.
            max_codebook_size: K, hypertokens per sequence (the codebook then freezes).
            max_subtokens: S, the longest phrase a hypertoken stands for.
            vocab_size: V, rows of the model's embedding; defaults to the tokenizer's id range.
                Hypertoken ids start at V, so it must match the model.
            protect_digits: never merge tokens made of digits (keeps arithmetic intact).
            extra_disabled_ids: more base ids never to merge.

        Raises:
            ConfigError: ``vocab_size`` is smaller than the tokenizer's ids, or K/S are invalid.
            TypeError: ``source`` is not a supported kind, or gives a slow tokenizer.
        """
        base = as_fast_tokenizer(source)
        needed = max(len(base), _largest_id(base) + 1)
        if vocab_size is None:
            vocab_size = needed
        elif vocab_size < needed:
            raise ConfigError(f"vocab_size {vocab_size} is smaller than the tokenizer's {needed} ids")
        disabled = set(default_disabled_ids(base, protect_digits=protect_digits))
        extra = [int(i) for i in extra_disabled_ids]
        disabled.update(extra)
        config = CodebookConfig(vocab_size, max_codebook_size, max_subtokens, sorted(disabled))
        return cls(base, config, protect_digits=protect_digits, extra_disabled_ids=extra)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], *_args: Any, **_loading: Any) -> Zip2ZipTokenizer:
        """Load what :meth:`save_pretrained` wrote (also what ``AutoTokenizer.from_pretrained``
        calls for a zip2zip folder once ``zip2zip.modeling`` is imported).

        The folder is local: the loading options transformers passes on (``revision``,
        ``cache_dir``, ``local_files_only``...) are accepted and ignored. Folders saved before the
        base tokenizer moved into ``base_tokenizer/`` (its files beside ``zip2zip_config.json``)
        load too.

        Raises:
            FileNotFoundError: the folder or its ``zip2zip_config.json`` is missing.
            ConfigError: the config file is corrupted or does not fit the base tokenizer.
        """
        from transformers import AutoTokenizer, PretrainedConfig

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}: not saved by Zip2ZipTokenizer.save_pretrained")
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{config_path} is not valid JSON: {error}") from None
        except RecursionError:  # nesting deeper than the parser goes
            raise ConfigError(f"{config_path} is not a zip2zip config: its JSON is nested too deeply") from None
        config = read_codebook_config(data, config_path)
        check_folder_configs_agree(directory)
        # A blank model config: the tokenizer is the base tokenizer's files alone (a folder saved
        # before base_tokenizer/ also holds the zip2zip model's config.json, not the base's).
        base = AutoTokenizer.from_pretrained(str(base_tokenizer_folder(directory)), config=PretrainedConfig())
        expected = set(default_disabled_ids(base, protect_digits=data["protect_digits"])) | set(
            data["extra_disabled_ids"]
        )
        if expected != set(config.disabled_ids):
            raise ConfigError(
                f"{config_path}: disabled_ids do not match the base tokenizer's special tokens, digits and "
                "extra_disabled_ids (was the tokenizer changed after saving?)"
            )
        return cls(base, config, protect_digits=data["protect_digits"], extra_disabled_ids=data["extra_disabled_ids"])

    def save_pretrained(self, directory: str | os.PathLike[str]) -> tuple[str, ...]:
        """Write ``zip2zip_config.json`` and a ``tokenizer_config.json`` that names
        ``Zip2ZipTokenizer`` to ``directory``, and the base tokenizer's files to its
        ``base_tokenizer/`` folder. ``AutoTokenizer.from_pretrained`` then gives this tokenizer
        back (with ``zip2zip.modeling`` imported), and plain transformers without zip2zip fails
        on the folder instead of returning the base tokenizer.

        Each file is written whole before any replaces the folder's old one, so a failed save
        (a full disk) leaves the folder as it was.

        Raises:
            zip2zip.files.SaveError: the files could not be written.
        """
        from zip2zip.files import staged_save

        directory = Path(directory)
        data = {
            "format_version": CONFIG_FORMAT_VERSION,
            "vocab_size": self.config.vocab_size,
            "max_codebook_size": self.config.max_codebook_size,
            "max_subtokens": self.config.max_subtokens,
            "disabled_ids": list(self.config.disabled_ids),
            "protect_digits": self.protect_digits,
            "extra_disabled_ids": list(self.extra_disabled_ids),
        }
        with staged_save(directory) as stage:
            staged = [Path(f) for f in self.base.save_pretrained(str(stage / BASE_TOKENIZER_FOLDER))]
            (stage / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            (stage / "tokenizer_config.json").write_text(json.dumps(FOLDER_TOKENIZER_CONFIG, indent=2) + "\n")
        files = tuple(str(directory / f.relative_to(stage)) if f.is_relative_to(stage) else str(f) for f in staged)
        return (*files, str(directory / CONFIG_NAME), str(directory / "tokenizer_config.json"))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "config": self.config,
            "protect_digits": self.protect_digits,
            "extra_disabled_ids": self.extra_disabled_ids,
            "padding_side": self.padding_side,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["base"],
            state["config"],
            protect_digits=state["protect_digits"],
            extra_disabled_ids=state["extra_disabled_ids"],
        )
        self.padding_side = state["padding_side"]

    # ------------------------------------------------------------------ sizes and specials

    @property
    def vocab_size(self) -> int:
        """V: base ids are below it, hypertoken ids start at it."""
        return self.config.vocab_size

    def __len__(self) -> int:
        """V + K: every id a code can take."""
        return self.config.vocab_size + self.config.max_codebook_size

    def __repr__(self) -> str:
        return f"Zip2ZipTokenizer(base={type(self.base).__name__}, {self.config!r})"

    def __getattr__(self, name: str) -> Any:
        # Special-token attributes, chat_template, model_max_length...: the base tokenizer's.
        if name.startswith("_") or name in {"base", "config"}:
            raise AttributeError(name)
        delegated = {
            "bos_token",
            "eos_token",
            "unk_token",
            "pad_token",
            "sep_token",
            "cls_token",
            "mask_token",
            "bos_token_id",
            "eos_token_id",
            "unk_token_id",
            "pad_token_id",
            "sep_token_id",
            "cls_token_id",
            "mask_token_id",
            "all_special_ids",
            "all_special_tokens",
            "special_tokens_map",
            "chat_template",
            "model_max_length",
            "name_or_path",
        }
        if name in delegated:
            return getattr(self.base, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # ------------------------------------------------------------------ encoding

    def encode(self, text: TextInput, add_special_tokens: bool = True) -> list[int]:
        """The codes of one text, from an empty codebook."""
        _ids, (codes, _installed, _codebook, _lengths) = self._hyper.encode(text, add_special_tokens)
        return [int(c) for c in codes]

    def encode_ids(self, ids: Codes) -> Encoding:
        """Compress base ids you already have (same as `zip2zip.encode_ids` with this config)."""
        return encode_ids(self.config, ids)

    def __call__(
        self,
        text: TextInput | Sequence[TextInput],
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        padding_side: str | None = None,
    ) -> BatchEncoding:
        """Tokenize and compress a text or a batch of texts.

        Args:
            text: a string or a list of strings.
            add_special_tokens: as the base tokenizer (e.g. BOS).
            padding: False / "do_not_pad", True / "longest", or "max_length".
            truncation: cut sequences to ``max_length`` codes (right side only: codes refer to
                entries made by earlier codes, so a left cut would change their meaning).
            max_length: a length in codes, for truncation and ``padding="max_length"``.
            return_tensors: "pt", "np" or None (lists).
            return_attention_mask: include ``attention_mask``.
            padding_side: "left" or "right" (default: the tokenizer's ``padding_side``).

        Returns:
            A transformers ``BatchEncoding`` with ``input_ids`` (codes), ``attention_mask``,
            ``codebook`` ([batch, entries, S] phrases padded with 0), ``codebook_lengths``
            ([batch, entries], 0 for padding rows) and ``installed`` ([batch, length]: entries
            a decoder has after each code; 0 at padding). With ``return_tensors=None`` the
            ids, mask and installed counts are lists (unbatched for a single text) and the
            codebooks NumPy arrays (per text when not padded).

        Raises:
            UsageError: bad padding/truncation arguments; TypeError: ``text`` is not str/list.
        """
        from transformers import BatchEncoding

        batched = not isinstance(text, str)
        if batched:
            if not isinstance(text, (list, tuple)) or not all(isinstance(t, str) for t in text):
                raise TypeError("text must be a string or a list/tuple of strings")
            texts = list(text)
        else:
            texts = [text]
        padding_strategy = _padding_strategy(padding)
        if truncation not in (False, True, "longest_first", "only_first", "do_not_truncate"):
            raise UsageError(f"unsupported truncation {truncation!r}: zip2zip truncates codes on the right")
        truncate = truncation not in (False, "do_not_truncate")
        if (truncate or padding_strategy == "max_length") and max_length is None:
            raise UsageError("truncation and padding='max_length' need max_length (counted in codes)")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral)):
            raise TypeError(f"max_length must be an integer (a number of codes), got {max_length!r}")
        if max_length is not None and max_length < 1:
            raise UsageError(f"max_length must be at least 1, got {max_length}")
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise UsageError(f"padding_side must be 'left' or 'right', got {side!r}")
        if return_tensors not in (None, "pt", "np"):
            raise UsageError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")

        rows = [arrays for _ids, arrays in self._hyper.encode_batch(texts, add_special_tokens)]
        codes_list, installed_list, codebooks, lengths_list = [], [], [], []
        for codes, installed, codebook, lengths in rows:
            if truncate and len(codes) > max_length:  # type: ignore[operator]
                codes, installed = codes[:max_length], installed[:max_length]
                keep = int(installed[-1])
                codebook, lengths = codebook[:keep], lengths[:keep]
            codes_list.append(codes)
            installed_list.append(installed)
            codebooks.append(codebook)
            lengths_list.append(lengths)

        if padding_strategy == "do_not_pad" and return_tensors is not None and len({len(c) for c in codes_list}) > 1:
            raise UsageError("sequences have different lengths: pass padding=True to return tensors")
        if padding_strategy == "do_not_pad" and return_tensors is None:
            # The codebooks stay NumPy arrays: as nested lists they would cost more than the
            # tokenization itself (a list per entry), and no consumer wants them as lists.
            data: dict[str, Any] = {
                "input_ids": [c.tolist() for c in codes_list],
                "installed": [i.tolist() for i in installed_list],
                "codebook": codebooks,
                "codebook_lengths": lengths_list,
            }
            if return_attention_mask:
                data["attention_mask"] = [[1] * len(c) for c in codes_list]
            if not batched:
                data = {key: value[0] for key, value in data.items()}
            return BatchEncoding(data)

        length = max((len(c) for c in codes_list), default=0)
        if padding_strategy == "max_length":
            length = max(length, max_length or 0)
        pad_id = self.base.pad_token_id if self.base.pad_token_id is not None else 0
        data = pad_rows(
            codes_list, installed_list, codebooks, lengths_list, length, self.config.max_subtokens, pad_id, side
        )
        attention = data.pop("attention_mask")
        if return_attention_mask:
            data["attention_mask"] = attention
        if return_tensors is None:
            data = {key: value if key.startswith("codebook") else value.tolist() for key, value in data.items()}
            if not batched:
                data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, tensor_type=return_tensors)

    # ------------------------------------------------------------------ decoding

    def expand(self, codes: Codes, state: CodecState | None = None) -> np.ndarray:
        """The base ids of ``codes`` read from ``state`` (a copy; default: an empty codebook).

        Raises:
            ConfigError: ``state`` was made with another codebook config (as ``decode``).
        """
        tracker = self._tracker(state)
        ids, _new = tracker.feed_codes(_strip_tensor(codes))
        return ids

    def decode(
        self,
        codes: Codes | int,
        *,
        state: CodecState | None = None,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **ignored: Any,
    ) -> str:
        """The text of ``codes``.

        Args:
            codes: codes of one sequence (list, array or 1-D tensor), or one code.
            state: the codebook state at the start of ``codes``; None for a whole sequence.
                To decode a generated suffix, pass the state after the prompt's codes. A 1-D
                tensor slice of a recent ``generate()`` output of a zip2zip model (as
                ``pipeline()`` decodes ``sequence[prompt_length:]``) is read with the state at
                its start without one.
            skip_special_tokens: as the base tokenizer.
            clean_up_tokenization_spaces: as the base tokenizer (None: its own setting).
            ignored: the other keywords transformers passes to a tokenizer's ``decode``
                (``spaces_between_special_tokens`` and the like) are accepted and have no effect.

        Raises:
            InvalidCodeError: a code is out of range or not known in that state.
        """
        if state is None:
            state = state_before(codes, self.config)
        sequence: Codes = [int(codes)] if isinstance(codes, numbers.Integral) else _strip_tensor(codes)
        clean = clean_up_tokenization_spaces
        if clean is None:
            clean = bool(getattr(self.base, "clean_up_tokenization_spaces", False))
        if clean:
            # transformers post-processes its decode; reuse it so the text is identical.
            ids = self.expand(sequence, state).tolist()
            return str(
                self.base.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=True)
            )
        return self._hyper.decode(sequence, state, skip_special_tokens)

    def batch_decode(
        self,
        sequences: Iterable[Codes],
        *,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **ignored: Any,
    ) -> list[str]:
        """Decode whole sequences (each from an empty codebook), in parallel; the keywords are
        :meth:`decode`'s."""
        sequences = [_strip_tensor(s) for s in sequences]
        clean = clean_up_tokenization_spaces
        if clean is None:
            clean = bool(getattr(self.base, "clean_up_tokenization_spaces", False))
        if clean:
            return [
                self.decode(s, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=True)
                for s in sequences
            ]
        return self._hyper.decode_batch(sequences, skip_special_tokens)

    def stream(self, state: CodecState | None = None, *, skip_special_tokens: bool = False) -> TextStream:
        """A streaming detokenizer: ``stream.step(codes)`` returns the text they complete and
        never splits a UTF-8 character. Pass the prompt's state to stream generated codes."""
        return TextStream(self._hyper, state, skip_special_tokens)

    def _tracker(self, state: CodecState | None) -> CodecState:
        """A copy of ``state`` to read codes with (an empty one for ``None``)."""
        if state is None:
            return CodecState(self.config)
        if state.config != self.config:
            raise ConfigError("the state was made with another codebook config than the tokenizer's")
        return state.copy()

    def state_after(self, codes: Codes, state: CodecState | None = None) -> CodecState:
        """The codebook state after reading ``codes`` (from ``state`` or empty): what decoding
        or generating a continuation needs.

        Raises:
            ConfigError: ``state`` was made with another codebook config (as ``decode``).
        """
        tracker = self._tracker(state)
        tracker.feed_codes(_strip_tensor(codes))
        return tracker

    def convert_ids_to_tokens(self, codes: Codes | int, state: CodecState | None = None) -> list[str] | str:
        """Token strings; a hypertoken shows as its base tokens joined.

        Raises:
            ConfigError: ``state`` was made with another codebook config (as ``decode``).
        """
        single = isinstance(codes, (int, np.integer))
        sequence = [int(codes)] if isinstance(codes, (int, np.integer)) else [int(c) for c in _strip_tensor(codes)]
        tracker = self._tracker(state)
        tokens = []
        for code in sequence:
            tracker.feed_codes([code])
            pieces = self.base.convert_ids_to_tokens(tracker.phrase(code).tolist())
            tokens.append("".join(pieces))
        return tokens[0] if single else tokens

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        *,
        tokenize: bool = True,
        add_generation_prompt: bool = False,
        return_tensors: str | None = None,
        return_dict: bool = False,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        padding_side: str | None = None,
        **template_kwargs: Any,
    ) -> Any:
        """Render with the base tokenizer's chat template, then compress.

        With ``tokenize=False`` the rendered text is returned; with ``return_dict=True`` the
        full ``BatchEncoding`` of :meth:`__call__`, else the codes. ``padding``, ``truncation``,
        ``max_length`` (in codes) and ``padding_side`` are :meth:`__call__`'s; other keywords go
        to the template.
        """
        rendered: Any = self.base.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt, **template_kwargs
        )
        if not tokenize:
            return rendered
        # The template already holds the special tokens (BOS etc.): do not add them twice.
        encoding = self(
            rendered,
            add_special_tokens=False,
            return_tensors=return_tensors,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            padding_side=padding_side,
        )
        return encoding if return_dict else encoding["input_ids"]


def _strip_tensor(codes: Any) -> Any:
    """Accept 1-D torch tensors (any device) and arrays; leave lists alone."""
    if hasattr(codes, "detach") and hasattr(codes, "cpu"):
        codes = codes.detach().cpu().numpy()
    if isinstance(codes, np.ndarray) and codes.ndim != 1:
        raise _core.InvalidCodeError(f"codes must be one-dimensional, got shape {codes.shape}")
    return codes


def _padding_strategy(padding: bool | str) -> str:
    if padding is True or padding == "longest":
        return "longest"
    if padding is False or padding == "do_not_pad":
        return "do_not_pad"
    if padding == "max_length":
        return "max_length"
    raise UsageError(f"padding must be True/False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
