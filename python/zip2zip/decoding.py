"""Deprecated: `zip2zip.decoding` moved to `zip2zip.generation`; this alias goes in the next release."""

import warnings

from zip2zip.generation.static import *  # noqa: F403
from zip2zip.generation.static_loop import *  # noqa: F403

warnings.warn("zip2zip.decoding is deprecated: import from zip2zip.generation", DeprecationWarning, stacklevel=2)
