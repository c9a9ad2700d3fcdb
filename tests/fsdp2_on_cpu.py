"""``python -m torch.distributed.run --nproc_per_node N tests/fsdp2_on_cpu.py train ...``: `zip2zip train`
under accelerate's FSDP2 on CPU processes (gloo), for tests/test_training.py.

accelerate turns FSDP on only on GPUs: on CPU processes its state stays MULTI_CPU (DDP). Here,
after accelerate has built its state from the ``ACCELERATE_USE_FSDP``/``FSDP_*`` environment that
``accelerate launch --use_fsdp`` sets, the state is switched to FSDP with that plugin; from there
on accelerate runs its FSDP2 code (``fully_shard``, DTensor parameters, gathered state dicts,
sharded checkpoints) as on GPUs. Each process prints ``FSDP2 rank <index> <model class>`` after ``prepare``.
"""

from __future__ import annotations

import sys
from typing import Any

import accelerate
import accelerate.state
from accelerate.utils import DistributedType

_state_init = accelerate.state.AcceleratorState.__init__
_prepare = accelerate.Accelerator.prepare


def _fsdp_state_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _state_init(self, *args, **kwargs)
    given = kwargs.get("fsdp_plugin")
    plugin = given or self.__dict__.get("fsdp_plugin")
    # Every AcceleratorState() re-reads the process state (MULTI_CPU): switch each time.
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        if given is not None and self._mixed_precision != "no":
            plugin.set_mixed_precision(self._mixed_precision)
        self.fsdp_plugin = plugin


def _reporting_prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
    prepared = _prepare(self, *args, **kwargs)
    for item in prepared if isinstance(prepared, (list, tuple)) else [prepared]:
        if self.is_fsdp2 and hasattr(item, "named_parameters"):
            # One write of one short line: the processes share the pipe, and print()'s separate writes
            # of its arguments interleave between them.
            sys.stdout.write(f"FSDP2 rank {self.process_index} {type(item).__name__}\n")
            sys.stdout.flush()
    return prepared


accelerate.state.AcceleratorState.__init__ = _fsdp_state_init
accelerate.Accelerator.prepare = _reporting_prepare

if __name__ == "__main__":
    from zip2zip.cli import main

    sys.exit(main(sys.argv[1:]))
