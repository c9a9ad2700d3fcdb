"""Deprecated: `zip2zip.bench` moved to `zip2zip.generation`; this alias goes in the next release."""

import warnings

from zip2zip.cli.bench import *  # noqa: F403
from zip2zip.evaluation.prompts import BENCH_PROMPTS as PROMPT_SETS  # noqa: F401
from zip2zip.generation.bench import *  # noqa: F403

warnings.warn("zip2zip.bench is deprecated: import from zip2zip.generation", DeprecationWarning, stacklevel=2)
