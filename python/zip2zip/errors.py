"""Every error zip2zip raises on purpose, in one hierarchy.

``Zip2ZipError`` is a ``ValueError``: bad input is a bad value, and code that catches
``ValueError`` around a tokenizer or a model keeps working. The codec's errors come from the
Rust core (`zip2zip._core`); the Python side adds the ones below. Missing files stay
``FileNotFoundError`` (`zip2zip.corpus.CorpusNotFoundError`,
`zip2zip.evaluation.humaneval.HumanEvalNotFoundError`) and failed saves ``OSError``
(`zip2zip.files.SaveError`), as Python's own file errors are; the command line counts them, and
``Zip2ZipError``, as the user's errors (exit status 2), and anything else as a bug.

    Zip2ZipError (ValueError)
    ├── InvalidIdError, InvalidCodeError, ConfigError, StateError, TokenizerError  (the codec)
    ├── ModelInputError      inputs a model cannot read: shapes, codes, padding, options
    ├── CheckpointError      saved weights that do not match the model, or are cut short
    ├── TrainingError        training options, data or checkpoints that cannot be used
    ├── EvaluationError      evaluation options that cannot be used
    └── UsageError           options that cannot be used (a tokenizer call's, a command line)
"""

from __future__ import annotations

from zip2zip._core import ConfigError, InvalidCodeError, InvalidIdError, StateError, TokenizerError, Zip2ZipError


class ModelInputError(Zip2ZipError):
    """Inputs a zip2zip model cannot read: shapes that disagree, codes out of range, right
    padding where generation needs left padding, or an option it does not support."""


class CheckpointError(Zip2ZipError):
    """Saved weights that do not match the model (missing, unexpected or reshaped tensors), or
    a weights file that is cut short or corrupt; the message names the file."""


class TrainingError(Zip2ZipError):
    """Training options, data or checkpoints that cannot be used."""


class EvaluationError(Zip2ZipError):
    """Evaluation options that cannot be used."""


class UsageError(Zip2ZipError):
    """Options that cannot be used: a tokenizer call's (padding, truncation, return type), a
    report's, or a command line that cannot be run (the command line prints it and exits with
    status 2)."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "EvaluationError",
    "InvalidCodeError",
    "InvalidIdError",
    "ModelInputError",
    "StateError",
    "TokenizerError",
    "TrainingError",
    "UsageError",
    "Zip2ZipError",
]
