"""Deprecated: `zip2zip.data` moved to `zip2zip.training.data`; this alias goes in the next release."""

import warnings

from zip2zip.training.data import *  # noqa: F403

warnings.warn("zip2zip.data is deprecated: import from zip2zip.training.data", DeprecationWarning, stacklevel=2)
