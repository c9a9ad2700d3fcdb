"""``zip2zip train``: LoRA uptraining of a base model into a zip2zip model (`zip2zip.training`)."""

from __future__ import annotations

import json
import os
from typing import Any

from zip2zip.training.config import TrainConfig, add_arguments

__all__ = ["add_arguments", "run"]


def run(args: Any) -> int:
    """Entry point of ``zip2zip train``."""
    from zip2zip.training.loop import train

    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{name: getattr(args, name) for name in fields if hasattr(args, name)})
    summary = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0
