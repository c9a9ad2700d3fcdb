"""``zip2zip train``: LoRA uptraining of a base model into a zip2zip model.

The same command runs on a CPU, one GPU, or several under ``accelerate launch`` (DDP, FSDP2): the loop
is written on `accelerate`. Trained: LoRA on the base (frozen) and the hyper-encoders (fully,
with their own learning rate). Loss: next-code cross-entropy over windows of a fixed number of
codes (`zip2zip.training.data.CodeWindows`), computed by `zip2zip.ops.hyper_cross_entropy` without
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
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zip2zip.errors import ConfigError, TrainingError
from zip2zip.files import write_atomic
from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.modeling.loss_terms import LossTerm, scored_targets
from zip2zip.sources import base_tokenizer_source, load_base_model
from zip2zip.tokenizer import Zip2ZipTokenizer
from zip2zip.training.checkpoints import (
    check_checkpoint_weights,
    keep_trainable_weights,
    latest_checkpoint,
    save_checkpoint,
)
from zip2zip.training.config import TrainConfig
from zip2zip.training.data import (
    CodeWindows,
    collate_windows,
    read_back_mask,
    read_documents,
    tokenize_document_stream,
)
from zip2zip.training.losses import AdapterKL, DistillKL
from zip2zip.training.samplers import EpochOrder, GroupedBatches


def build_windows(
    tokenizer: Any,
    paths: Sequence[str],
    window_codes: int,
    document_windows: bool = False,
    plain_tokens: int = 0,
    teacher_ids: bool = False,
    read_back_share: float = 0.0,
    seed: int = 0,
) -> Any:
    documents = read_documents(paths)
    ids, mask, starts = tokenize_document_stream(tokenizer, documents)
    if len(ids) < 2:
        raise TrainingError(f"no text in {', '.join(paths)}")
    read_back = read_back_mask(documents, mask, starts, read_back_share, seed) if read_back_share else None
    return CodeWindows(
        tokenizer,
        ids,
        mask,
        window_codes,
        document_starts=starts if document_windows else None,
        plain_tokens=plain_tokens,
        teacher_ids=teacher_ids,
        read_back=read_back,
    )


def load_pair(config: TrainConfig) -> tuple[Any, Any]:
    """The tokenizer and the wrapped base model with a fresh LoRA adapter, or, with
    ``config.init``, the saved zip2zip model there (its adapter trainable) on the base
    ``config.base``; the codebook, encoder and LoRA settings of ``config`` are then set to the
    saved model's."""
    if config.init:
        tokenizer = Zip2ZipTokenizer.from_pretrained(config.init)
        model = Zip2ZipForCausalLM.from_pretrained(
            config.init, base_model=load_base_model(config.base), is_trainable=True
        )
        if not model.has_adapter:
            raise TrainingError(f"--init {config.init}: the saved model has no LoRA adapter to continue training")
        saved = model.config
        lora: Any = model.base.peft_config["default"]
        config.max_codebook_size, config.max_subtokens = saved.max_codebook_size, saved.max_subtokens
        config.encoder_type, config.encoder_layers = saved.encoder_type, saved.encoder_layers
        config.encoder_latent_size, config.position_mode = saved.encoder_latent_size, saved.position_mode
        config.lora_r, config.lora_alpha, config.lora_dropout = lora.r, lora.lora_alpha, lora.lora_dropout
        config.lora_targets = (
            sorted(lora.target_modules) if not isinstance(lora.target_modules, str) else [lora.target_modules]
        )
        if config.grow_encoder_layers:
            try:
                model.grow_encoders(config.grow_encoder_layers)
            except ConfigError as error:
                raise TrainingError(f"--grow-encoder-layers: {error}") from error
            config.encoder_layers = config.grow_encoder_layers
        if config.grow_lora_rank:
            try:
                model.grow_lora_rank(config.grow_lora_rank)
            except ConfigError as error:
                raise TrainingError(f"--grow-lora-rank: {error}") from error
            config.lora_r, config.lora_alpha = lora.r, lora.lora_alpha
    else:
        tokenizer, model = _fresh_pair(config)
    if model.hyper.conditional is not None:
        config.conditional_head = model.config.conditional_head_size
    elif config.conditional_head:
        try:
            model.add_conditional_head(config.conditional_head)
        except ConfigError as error:
            raise TrainingError(f"--conditional-head: {error}") from error
    if model.config.canonical_outputs:
        config.canonical = True
        config.validate()  # --read-back-answers does not combine with a model kept canonical
    elif config.canonical:
        model.config.canonical_outputs = True
    if config.gradient_checkpointing:
        model.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return tokenizer, model


def _fresh_pair(config: TrainConfig) -> tuple[Any, Any]:
    tokenizer = Zip2ZipTokenizer.from_base(
        base_tokenizer_source(config.base),
        max_codebook_size=config.max_codebook_size,
        max_subtokens=config.max_subtokens,
    )
    model = Zip2ZipForCausalLM.from_base(
        config.base,
        tokenizer,
        encoder_type=config.encoder_type,
        encoder_layers=config.encoder_layers,
        encoder_latent_size=config.encoder_latent_size,
        position_mode=config.position_mode,
    )
    model.add_lora(
        r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout, target_modules=config.lora_targets
    )
    return tokenizer, model


def loss_terms(batch: dict[str, torch.Tensor], config: TrainConfig) -> list[LossTerm]:
    """The extra loss terms of one batch (`zip2zip.training.losses`), made from (and popped
    off) the fields `zip2zip.training.data.CodeWindows` adds for them: ``plain_ids`` and
    ``plain_mask`` for ``--adapter-kl``; ``window_ids``, ``window_mask`` and ``code_ends`` for
    ``--distill``."""
    terms: list[LossTerm] = []
    if "plain_ids" in batch:
        terms.append(AdapterKL(batch.pop("plain_ids"), batch.pop("plain_mask"), weight=config.adapter_kl))
    if "window_ids" in batch:
        terms.append(
            DistillKL(
                batch.pop("window_ids"),
                batch.pop("window_mask"),
                batch.pop("code_ends"),
                weight=config.distill,
                top=config.distill_top,
            )
        )
    return terms


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
                setattr(module, "cast_input_dtype_enabled", False)  # noqa: B010 (peft does not declare it); what peft.helpers.disable_input_dtype_casting sets


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


def make_accelerator(config: TrainConfig) -> Any:
    """The run's `accelerate.Accelerator`: bf16 or not, gradient accumulation, FSDP2 when launched so."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # A window without hypertokens in its input leaves the input encoder without gradients on
    # that process; DDP must then look for unused parameters, or the processes would deadlock.
    return Accelerator(
        mixed_precision="bf16" if config.bf16 else "no",
        gradient_accumulation_steps=config.grad_accum,
        cpu=config.cpu,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        fsdp_plugin=fsdp2_plugin(config.bf16),
    )


def make_loaders(config: TrainConfig, tokenizer: Any, world: int) -> tuple[Any, Any]:
    """The training loader (enough epochs for every step of all ``world`` processes, grouped by
    length or shuffled) and the held-out loader (None without ``eval_data``)."""
    plain_tokens = config.adapter_kl_tokens if config.adapter_kl > 0 else 0
    windows = build_windows(
        tokenizer,
        config.data,
        config.window_codes,
        config.document_windows,
        plain_tokens,
        teacher_ids=config.distill > 0,
        read_back_share=config.read_back_answers,
        seed=config.seed,
    )
    windows_needed = config.steps * config.grad_accum * config.batch_size * world
    epochs = max(1, math.ceil(windows_needed / len(windows)))
    if config.group_by_length:
        lengths = np.diff(windows.starts)  # base tokens: a window's codes grow with them
        loader = torch.utils.data.DataLoader(
            windows,
            batch_sampler=GroupedBatches(lengths, config.batch_size, epochs, config.seed),
            collate_fn=collate_windows,
            num_workers=config.workers,
        )
    else:
        loader = torch.utils.data.DataLoader(
            windows,
            batch_size=config.batch_size,
            sampler=EpochOrder(len(windows), epochs, config.seed),
            collate_fn=collate_windows,
            num_workers=config.workers,
            drop_last=True,
        )
    eval_loader = None
    if config.eval_data and config.eval_every:
        eval_windows = build_windows(tokenizer, config.eval_data, config.window_codes, config.document_windows)
        eval_loader = torch.utils.data.DataLoader(
            eval_windows, batch_size=config.batch_size, collate_fn=collate_windows
        )
    return loader, eval_loader


def make_optimizer(model: Any, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with the LoRA and the encoder learning rates, and the cosine schedule with warmup
    (stepped once per optimizer step of the global batch, by the loop, not by accelerate)."""
    from transformers import get_cosine_schedule_with_warmup

    encoder_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("hyper.")]
    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("hyper.")]
    optimizer = torch.optim.AdamW(
        [{"params": lora_params, "lr": config.lr}, {"params": encoder_params, "lr": config.encoder_lr}],
        weight_decay=config.weight_decay,
    )
    return optimizer, get_cosine_schedule_with_warmup(optimizer, config.warmup, config.steps)


def resume_state(accelerator: Any, model: Any, checkpoint: Path | None) -> int:
    """Load ``checkpoint`` (None: nothing) into the prepared objects; returns its step."""
    if checkpoint is None:
        return 0
    check_checkpoint_weights(model, checkpoint)
    # strict=False: the frozen base is not in the checkpoint (it came from its source);
    # check_checkpoint_weights made sure that every trained tensor is.
    accelerator.load_state(str(checkpoint), **({} if accelerator.is_fsdp2 else {"strict": False}))
    return int(json.loads((checkpoint / "zip2zip_step.json").read_text())["step"])


def logged_counts(log_path: Path, step: int) -> tuple[int, int]:
    """Codes and base tokens the log holds at ``step`` (0, 0 from the start): the log counts from
    the start of training, across resumes."""
    if step and log_path.exists():
        for line in log_path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("step") == step:
                return int(entry["codes"]), int(entry["base_tokens"])
    return 0, 0


def save_final(accelerator: Any, model: Any, tokenizer: Any, out: Path) -> None:
    """Save the trained model and the tokenizer into ``out`` (every process takes part)."""
    from accelerate.utils import DistributedType

    accelerator.wait_for_everyone()
    if accelerator.distributed_type == DistributedType.FSDP:
        # The modules hold shards: gather the whole weights (a collective, every process takes
        # part; the main process gets them, on the CPU, the others an empty dict) and save those.
        state = accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            accelerator.unwrap_model(model).save_pretrained(out, state_dict=state)
            tokenizer.save_pretrained(out)
    elif accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out)
        tokenizer.save_pretrained(out)


def out_of_time(accelerator: Any, config: TrainConfig, seconds: float) -> bool:
    """Whether ``--max-seconds`` has passed; all processes agree (any one over the limit stops them all)."""
    if not config.max_seconds:
        return False
    over = torch.tensor(float(seconds > config.max_seconds), device=accelerator.device)
    return float(accelerator.reduce(over, reduction="sum")) > 0


def micro_step(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    vocab: int,
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Forward and backward of one micro-batch (and the optimizer step when accumulation ends).

    Returns the model's output, the global batch's counts (targets, codes, base tokens; summed
    over processes) and this process's loss sum (its mean times its targets).
    """
    base_tokens = batch.pop("base_tokens")
    terms = loss_terms(batch, config)
    # Normalise by the targets of all processes: DDP's gradient average then equals the
    # gradient of the mean over the whole global batch, as one process would compute it.
    # One collective for the counts (targets, codes, base tokens), one for the loss.
    counted = scored_targets(batch["labels"], batch["installed"], vocab).sum()
    sizes = torch.stack([counted, batch["attention_mask"].sum(), base_tokens.sum().to(counted.device)])
    totals = accelerator.reduce(sizes, reduction="sum")
    with accelerator.accumulate(model):
        output = model(**batch, return_logits=False, loss_terms=terms)
        loss_sum = output.loss * counted
        accelerator.backward(loss_sum * accelerator.num_processes / totals[0].clamp(min=1))
        if accelerator.sync_gradients and config.clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if accelerator.sync_gradients:
            scheduler.step()
        optimizer.zero_grad()
    return output, totals, loss_sum


def train(config: TrainConfig) -> dict[str, Any]:
    """Run a training; returns a summary (final loss, steps, throughput).

    Raises:
        TrainingError: invalid settings or no data.
        FileExistsError: ``out`` holds a finished or started run and ``resume`` is not set.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    config.validate()
    out = Path(config.out)
    accelerator = make_accelerator(config)
    checkpoint = latest_checkpoint(out) if config.resume else None
    if accelerator.is_main_process and not config.resume and (out / "train_log.jsonl").exists():
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or another --out")
    set_seed(config.seed)
    tokenizer, model = load_pair(config)
    tune_for_speed(model, accelerator.device, config.bf16)
    world = accelerator.num_processes
    loader, eval_loader = make_loaders(config, tokenizer, world)
    optimizer, scheduler = make_optimizer(model, config)
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
    step = resume_state(accelerator, model, checkpoint)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "train_config.json", json.dumps(asdict(config), indent=1))
    batches = accelerator.skip_first_batches(loader, step * config.grad_accum) if step else loader
    log_path = out / "train_log.jsonl"
    progress = tqdm(
        total=config.steps, initial=step, disable=not accelerator.is_local_main_process, desc="zip2zip train"
    )
    model.train()
    started = time.perf_counter()
    seen_codes = seen_tokens = 0  # in this process's run (rates)
    earlier_codes, earlier_tokens = logged_counts(log_path, step)
    window_loss: list[float] = []
    last: dict[str, Any] = {}
    for batch in batches:
        if step >= config.steps:
            break
        output, totals, loss_sum = micro_step(accelerator, model, optimizer, scheduler, batch, config, vocab)
        targets_seen, codes_seen, tokens_seen = totals.tolist()
        seen_codes += codes_seen
        seen_tokens += tokens_seen
        window_loss.append(float(accelerator.reduce(loss_sum.detach(), reduction="sum")) / max(targets_seen, 1))
        if not accelerator.sync_gradients:
            continue
        step += 1
        seconds = time.perf_counter() - started
        last = {
            "step": step,
            "loss": sum(window_loss) / len(window_loss),
            "lr": scheduler.get_last_lr()[0],
            "codes": earlier_codes + seen_codes,
            "base_tokens": earlier_tokens + seen_tokens,
        }
        for name, value in (output.loss_terms or {}).items():
            last[name] = float(accelerator.reduce(value, reduction="mean"))  # of the last micro-batch
        window_loss = []
        progress.update(1)
        progress.set_postfix(
            loss=f"{last['loss']:.3f}",
            codes_s=f"{seen_codes / seconds:.0f}",
            tokens_s=f"{seen_tokens / seconds:.0f}",
            ratio=f"{seen_tokens / max(seen_codes, 1):.2f}",
        )
        if eval_loader is not None and step % config.eval_every == 0:
            last["eval_loss"] = evaluate_loss(model, eval_loader, accelerator, config.eval_windows)
        if accelerator.is_main_process:
            with log_path.open("a") as log:
                log.write(json.dumps(last) + "\n")
        saved = bool(config.save_every and step % config.save_every == 0)
        if saved:
            save_checkpoint(accelerator, out, step)
        if out_of_time(accelerator, config, seconds):
            # The state is saved so that --resume continues from here.
            if step < config.steps and not saved:
                save_checkpoint(accelerator, out, step)
            break
    progress.close()
    save_final(accelerator, model, tokenizer, out)
    seconds = time.perf_counter() - started
    return {
        **last,
        "seconds": seconds,
        "codes_per_s": seen_codes / max(seconds, 1e-9),
        "base_tokens_per_s": seen_tokens / max(seconds, 1e-9),
        "processes": world,
    }
