"""What a saved zip2zip folder holds, read without torch: the tokenizer's file names and layout, and
the check that a model's ``config.json`` and a tokenizer's ``zip2zip_config.json`` side by side
describe one codebook. Both the tokenizer and the model use it; neither imports the other for it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zip2zip._core import CodebookConfig, ConfigError

CONFIG_NAME = "zip2zip_config.json"  # the tokenizer's codebook config
CONFIG_FORMAT_VERSION = 1
BASE_TOKENIZER_FOLDER = "base_tokenizer"  # the base tokenizer's own files (tokenizer.json, its config, template)
# The folder's tokenizer_config.json: it names the zip2zip tokenizer for AutoTokenizer, and holds
# no tokenizer files, so that transformers without zip2zip cannot load the base tokenizer from it.
FOLDER_TOKENIZER_CONFIG = {
    "tokenizer_class": "Zip2ZipTokenizer",
    "base_tokenizer": BASE_TOKENIZER_FOLDER,
    "note": "a zip2zip tokenizer: pip install zip2zip, then zip2zip.Zip2ZipTokenizer.from_pretrained(folder)",
}
CODEBOOK_FIELDS = ("vocab_size", "max_codebook_size", "max_subtokens", "disabled_ids")


def base_tokenizer_folder(directory: str | os.PathLike[str]) -> Path:
    """Where a zip2zip folder's base tokenizer is: ``base_tokenizer/``, or the folder itself for
    folders saved before it existed."""
    directory = Path(directory)
    inner = directory / BASE_TOKENIZER_FOLDER
    return inner if inner.is_dir() else directory


def check_folder_configs_agree(directory: str | os.PathLike[str]) -> None:
    """In a folder that holds both a zip2zip model's ``config.json`` and a tokenizer's
    ``zip2zip_config.json``, the two must describe the same codebook (V, K, S, disabled ids);
    a folder with only one of them passes.

    Raises:
        ConfigError: they disagree (the message names the field and both values).
    """
    directory = Path(directory)
    model_path, tokenizer_path = directory / "config.json", directory / CONFIG_NAME
    if not (model_path.is_file() and tokenizer_path.is_file()):
        return
    try:
        model = json.loads(model_path.read_text(encoding="utf-8"))
        tokenizer = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ConfigError(f"{directory}: config.json or {CONFIG_NAME} is not valid JSON: {error}") from None
    if not isinstance(model, dict) or model.get("model_type") != "zip2zip" or not isinstance(tokenizer, dict):
        return
    for name in CODEBOOK_FIELDS:
        ours, theirs = model.get(name), tokenizer.get(name)
        if name == "disabled_ids" and isinstance(ours, list) and isinstance(theirs, list):
            ours, theirs = sorted(ours), sorted(theirs)
        if ours != theirs:
            shown = [v if not isinstance(v, list) else f"{len(v)} ids" for v in (ours, theirs)]
            raise ConfigError(
                f"{directory}: the model's config.json and the tokenizer's {CONFIG_NAME} disagree on "
                f"{name} ({shown[0]} against {shown[1]}): they were not saved together"
            )


def read_codebook_config(data: Any, path: Path) -> CodebookConfig:
    """The `CodebookConfig` of a ``zip2zip_config.json``'s parsed JSON (``path`` for messages).

    Raises:
        ConfigError: a field is missing, of the wrong type or out of range (named in the message).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    if data.get("format_version") != CONFIG_FORMAT_VERSION:
        raise ConfigError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    fields = {
        "vocab_size": int,
        "max_codebook_size": int,
        "max_subtokens": int,
        "disabled_ids": list,
        "protect_digits": bool,
        "extra_disabled_ids": list,
    }
    for name, kind in fields.items():
        value = data.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {name} must be {kind.__name__}, got {value!r}")
    for name in ("disabled_ids", "extra_disabled_ids"):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in data[name]):
            raise ConfigError(f"{path}: {name} must be a list of integers")
    try:
        return CodebookConfig(
            data["vocab_size"], data["max_codebook_size"], data["max_subtokens"], data["disabled_ids"]
        )
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except (OverflowError, TypeError) as error:  # numbers beyond 64 bits
        raise ConfigError(f"{path}: a size or disabled id is out of range: {error}") from None
