"""Deprecated: `zip2zip.answers` moved to `zip2zip.evaluation.answers`; this alias goes in the next release."""

import warnings

from zip2zip.evaluation.answers import *  # noqa: F403

warnings.warn("zip2zip.answers is deprecated: import from zip2zip.evaluation.answers", DeprecationWarning, stacklevel=2)
