"""Where a step of transformers' ``generate()`` goes, for the base model and the zip2zip model.

Issue 18 measured a zip2zip step at 44 ms against the base's 29 ms at batch 16 (the same at batch
1). This runs both through ``generate()`` (greedy, a fixed number of new tokens, no EOS) at each
batch size, prints the milliseconds per step (median of ``--repeats`` timed runs after a warm-up),
then one run of each under ``torch.profiler``: the ops with the most host time and, on a GPU, the
most device time, and how often the host waited on the device (``cudaStreamSynchronize``,
``cudaMemcpy``...).

    python benchmarks/generate_profile.py [--model models/smollm2-135m-zip2zip] [--batch-sizes 1 16]
        [--new-tokens 64] [--repeats 3] [--rows 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from zip2zip.evaluation.prompts import BENCH_PROMPTS, user_text
from zip2zip.generation.bench import load_pair


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _run(model: Any, batch: dict[str, torch.Tensor], new: int) -> float:
    _sync()
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    _sync()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m-zip2zip")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15, help="ops printed per table")
    args = parser.parse_args()
    device, _, tokenizer, model, base = load_pair(args.model)
    base_tokenizer = tokenizer.base
    prompts = [user_text(base_tokenizer, p) for p in BENCH_PROMPTS["code"]]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for batch_size in args.batch_sizes:
        texts = (prompts * batch_size)[:batch_size]
        for name, lm, tok in (("base", base, base_tokenizer), ("zip2zip", model, tokenizer)):
            tok.padding_side = "left"
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            _run(lm, batch, args.new_tokens)  # warm-up
            seconds = statistics.median(_run(lm, batch, args.new_tokens) for _ in range(args.repeats))
            print(f"\n## {name}, batch {batch_size}: {seconds / args.new_tokens * 1e3:.2f} ms per step", flush=True)
            with profile(activities=activities) as prof:
                _run(lm, batch, args.new_tokens)
            averages = prof.key_averages()
            waits = [e for e in averages if "Synchronize" in e.key or e.key.startswith("cudaMemcpy")]
            for event in waits:
                print(f"host waits: {event.key} x{event.count}, {event.cpu_time_total / 1e3:.1f} ms")
            print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
            if sort != "self_cpu_time_total":
                print(averages.table(sort_by=sort, row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
