"""Deprecated: `zip2zip.humaneval` moved to `zip2zip.evaluation.humaneval`; this alias goes in the next release."""

import warnings

from zip2zip.evaluation.humaneval import *  # noqa: F403

warnings.warn(
    "zip2zip.humaneval is deprecated: import from zip2zip.evaluation.humaneval", DeprecationWarning, stacklevel=2
)
