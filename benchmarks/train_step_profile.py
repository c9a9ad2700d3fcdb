"""Where a `zip2zip train` step spends its time, on a GPU.

    python benchmarks/train_step_profile.py BASE_FOLDER DATA... [--batch-sizes 16 32] [--steps 12]
        [--init MODEL_FOLDER] [--distill W] [--canonical]

Builds the model and windows as ``zip2zip train`` does (LoRA r=8, one-layer encoders of width
192, bf16 autocast, windows of 1,024 codes), then runs training steps and reports:

* the mean time of each phase of a step (``--batch-size`` windows), each ended by a device
  synchronisation: the batch from the DataLoader, its copy to the GPU, the encoders, the
  decoder, the loss, backward and the optimizer step (the sum is slower than an unsynchronised
  step);
* unsynchronised steps at each of ``--batch-sizes``, with and without cuDNN attention, then with
  the frozen base weights in bf16;
* the top kernels by GPU time and the top operators by CPU time over three profiled steps;
* with ``--distill W`` (the shipped recipe's term, ``zip2zip train --distill``): steps with and
  without the term on the same windows, and the teacher's forward alone, so that the term's cost
  splits into the teacher and the KL over the student's logits. ``--init`` starts from a saved
  model (``scripts/device/train.sh`` starts from the shipped one), ``--canonical`` trains under
  the canonical mask as ``zip2zip train --canonical`` does.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Iterator

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("data", nargs="+")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[16, 32], help="measured with and without cuDNN attention"
    )
    parser.add_argument("--window-codes", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--trace", default="", help="write a Chrome trace of the profiled steps here")
    parser.add_argument("--init", default=None, help="start from this saved zip2zip model (zip2zip train --init)")
    parser.add_argument("--distill", type=float, default=0.0, help="also time the distillation term at this weight")
    parser.add_argument("--canonical", action="store_true", help="train under the canonical mask")
    args = parser.parse_args()

    from zip2zip.nn.hyper_embedding import RowTable
    from zip2zip.training.data import collate_windows
    from zip2zip.training.loop import TrainConfig, build_windows, load_pair, loss_terms

    config = TrainConfig(
        base=args.base,
        data=args.data,
        out="",
        lora_r=8,
        encoder_layers=1,
        encoder_latent_size=192,
        bf16=True,
        window_codes=args.window_codes,
        batch_size=args.batch_size,
        init=args.init,
        distill=args.distill,
        canonical=args.canonical,
    )
    tokenizer, model = load_pair(config)
    model = model.to(args.device).train()
    windows = build_windows(tokenizer, args.data, args.window_codes, teacher_ids=args.distill > 0)
    # The distillation term's fields of a batch (`zip2zip.training.data.CodeWindows`).
    teacher_fields = ("window_ids", "window_mask", "code_ends")

    def batches_of(batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        return iter(
            torch.utils.data.DataLoader(
                windows,
                batch_size=batch_size,
                shuffle=True,
                collate_fn=collate_windows,
                num_workers=args.workers,
                drop_last=True,
                pin_memory=args.device == "cuda",
            )
        )

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    head = model.base.get_output_embeddings().weight
    batches = batches_of(args.batch_size)

    def sync() -> float:
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def next_batch(with_terms: bool) -> tuple[dict[str, torch.Tensor], list]:
        """The next batch on the device, and its loss terms (none unless ``with_terms``)."""
        batch = next(batches)
        batch.pop("base_tokens")
        batch = {k: v.to(args.device, non_blocking=True) for k, v in batch.items()}
        terms = loss_terms(batch, config) if with_terms else []
        for name in teacher_fields:
            batch.pop(name, None)
        return batch, terms

    def phased_step(times: dict[str, float]) -> None:
        t0 = sync()
        batch = next(batches)
        t1 = sync()
        batch.pop("base_tokens")
        for name in teacher_fields:
            batch.pop(name, None)
        batch = {k: v.to(args.device, non_blocking=True) for k, v in batch.items()}
        t2 = sync()
        with torch.autocast(args.device, dtype=torch.bfloat16):
            hyper = model.hyper
            input_rows = hyper.encode_rows(
                model._input_lookup(), batch["codebook"], batch["codebook_lengths"], hyper.input_encoder
            )
            output_rows = hyper.encode_rows(
                RowTable(head), batch["codebook"], batch["codebook_lengths"], hyper.output_encoder
            )
            embeds = hyper.input_embeddings(batch["input_ids"], model.base.get_input_embeddings(), input_rows)
            positions = hyper.position_ids(
                batch["input_ids"], batch["codebook_lengths"], batch["attention_mask"], "base"
            )
            t3 = sync()
            hidden = model.base.get_decoder()(
                inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=positions
            ).last_hidden_state
            t4 = sync()
            loss = hyper.fused_loss(hidden, head, output_rows, batch["labels"], batch["installed"], None)
            t5 = sync()
        loss.backward()
        t6 = sync()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        t7 = sync()
        for name, a, b in (
            ("batch", t0, t1),
            ("to gpu", t1, t2),
            ("encoders+embed", t2, t3),
            ("decoder", t3, t4),
            ("loss", t4, t5),
            ("backward", t5, t6),
            ("optimizer", t6, t7),
            ("total", t0, t7),
        ):
            times[name] += b - a

    def plain_step(with_terms: bool = False) -> None:
        batch, terms = next_batch(with_terms)
        with torch.autocast(args.device, dtype=torch.bfloat16):
            loss = model(**batch, return_logits=False, loss_terms=terms).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    def measure(batch_size: int, cudnn: bool, label: str) -> str:
        nonlocal batches
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        batches = batches_of(batch_size)
        for _ in range(3):
            plain_step()
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = sync()
        for _ in range(args.steps):
            plain_step()
        seconds = (sync() - start) / args.steps
        memory = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
        return (
            f"{label}: batch {batch_size}, cuDNN attention {'on' if cudnn else 'off'}: {1e3 * seconds:.1f} ms/step, "
            f"{batch_size * args.window_codes / seconds:,.0f} codes/s, peak memory {memory:.1f} GiB"
        )

    def measure_distill(batch_size: int) -> str:
        """ms per step without and with the distillation term, and of its teacher alone."""
        nonlocal batches
        torch.backends.cuda.enable_cudnn_sdp(False)
        batches = batches_of(batch_size)
        results = {}
        for label, with_terms in (("without the term", False), ("with it", True)):
            for _ in range(3):
                plain_step(with_terms)
            start = sync()
            for _ in range(args.steps):
                plain_step(with_terms)
            results[label] = (sync() - start) / args.steps
        teacher = 0.0
        for _ in range(args.steps):
            batch, terms = next_batch(True)
            term = terms[0]
            start = sync()
            with torch.autocast(args.device, dtype=torch.bfloat16):
                term._teacher(
                    model,
                    term.ids,
                    torch.ones_like(term.ids) if term.mask is None else term.mask,
                    term.ends,
                    head,
                    model._softcap(),
                    batch["input_ids"].shape[1],
                    model.config.vocab_size,
                )
            teacher += sync() - start
        teacher /= args.steps
        plain, full = results["without the term"], results["with it"]
        return (
            f"distill {args.distill} (top {config.distill_top}{', canonical' if args.canonical else ''}), batch "
            f"{batch_size}: {1e3 * plain:.1f} ms/step without the term, {1e3 * full:.1f} with it "
            f"({batch_size * args.window_codes / full:,.0f} codes/s); the teacher's forward alone "
            f"{1e3 * teacher:.1f} ms, so the KL over the student's logits about {1e3 * (full - plain - teacher):.1f} ms"
        )

    for _ in range(3):
        plain_step()
    if args.distill > 0:
        line = measure_distill(args.batch_size)
        print(line, flush=True)
    times: dict[str, float] = defaultdict(float)
    for _ in range(args.steps):
        phased_step(times)
    lines = [
        f"phases, mean of {args.steps} synchronised steps (ms): "
        + ", ".join(f"{k} {1e3 * v / args.steps:.1f}" for k, v in times.items())
    ]
    for batch_size in args.batch_sizes:
        for cudnn in (True, False):
            lines.append(measure(batch_size, cudnn, "fp32 base"))
            print(lines[-1], flush=True)
    if args.device == "cuda":
        for param in model.base.parameters():  # the frozen base in bf16; LoRA and encoders stay fp32
            if not param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
        for batch_size in args.batch_sizes:
            lines.append(measure(batch_size, False, "bf16 base"))
            print(lines[-1], flush=True)

    from torch.profiler import ProfilerActivity, profile

    torch.backends.cuda.enable_cudnn_sdp(False)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            plain_step()
        sync()
    table = prof.key_averages()
    report = (
        table.table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=60)
        + "\n"
        + table.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)
    )
    if args.trace:
        prof.export_chrome_trace(args.trace)
        with open(args.trace + ".txt", "w") as handle:
            handle.write(report)
    else:
        print(report)
    if args.distill > 0:
        lines.insert(0, line)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
