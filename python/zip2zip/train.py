"""Deprecated: `zip2zip.train` moved to `zip2zip.training`; this alias goes in the next release."""

import warnings

from zip2zip.cli.train import *  # noqa: F403
from zip2zip.training.checkpoints import *  # noqa: F403
from zip2zip.training.config import *  # noqa: F403
from zip2zip.training.loop import *  # noqa: F403
from zip2zip.training.samplers import *  # noqa: F403

warnings.warn("zip2zip.train is deprecated: import from zip2zip.training", DeprecationWarning, stacklevel=2)
