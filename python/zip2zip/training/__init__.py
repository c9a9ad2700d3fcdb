"""``zip2zip train``: LoRA uptraining of a base model into a zip2zip model.

config.py        TrainConfig and the command-line options built from it
data.py          documents, tokenization, code windows, batches
samplers.py      deterministic window orders (resumable)
losses.py        the extra loss terms (distillation, adapter KL)
checkpoints.py   checkpoints of the trained tensors, resuming
loop.py          the training loop on accelerate (CPU, one GPU, DDP, FSDP2)
"""

from zip2zip.training.config import TrainConfig
from zip2zip.training.loop import train
from zip2zip.training.losses import AdapterKL, DistillKL

__all__ = ["AdapterKL", "DistillKL", "TrainConfig", "train"]
