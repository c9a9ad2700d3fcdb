"""Deprecated: `zip2zip.evaluate` moved to `zip2zip.evaluation`; this alias goes in the next release."""

import warnings

from zip2zip.cli.evaluate import *  # noqa: F403
from zip2zip.evaluation.prompts import EVAL_PROMPTS as PROMPTS  # noqa: F401
from zip2zip.evaluation.report import *  # noqa: F403
from zip2zip.evaluation.scoring import *  # noqa: F403

warnings.warn("zip2zip.evaluate is deprecated: import from zip2zip.evaluation", DeprecationWarning, stacklevel=2)
