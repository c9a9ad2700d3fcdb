"""Where a step of transformers' ``generate()`` goes, for the base model and the zip2zip model.

Issue 18 measured a zip2zip step at 44 ms against the base's 29 ms at batch 16 (the same at batch
1). This runs both through ``generate()`` (greedy, a fixed number of new tokens, no EOS) at each
batch size and prints, from medians of ``--repeats`` timed runs after a warm-up:

- the cost of a step, apart from the call's fixed cost: runs of N and 2N new tokens give
  ``(t(2N) - t(N)) / N`` per step and ``t(N) - N * step`` for the rest (prefill, setup, the end);
- for the zip2zip model, one run with the parts of its step timed between device
  synchronisations (so they add up to more than the plain step): reading the new codes into the
  row embeddings, the codebook step and its copy to the device, the two hyper-encoders on the
  entries the step created, the base model's layers, the logits with the hypertoken rows, and
  what transformers' loop does around them; and the entries created per step;
- with ``--tables``, one run of each under ``torch.profiler``: the ops with the most host time
  and, on a GPU, the most device time, and how often the host waited on the device.

``--random-base`` puts a randomly initialised model of the base's shape (SmolLM2-135M's, written
by ``benchmarks/smollm2_shaped_base.py``'s recipe) under the model folder's encoders and adapter,
so the run needs no GGUF: the step's work has the real shapes, but a random model writes other
codes (often one repeated token), so fewer entries are created than on real text (printed).

    python benchmarks/generate_profile.py [--model models/smollm2-135m-zip2zip] [--random-base]
        [--batch-sizes 1 16] [--new-tokens 64] [--repeats 3] [--tables] [--rows 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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


def random_base_folder(model_folder: str, root: Path) -> str:
    """A copy of ``model_folder`` whose base source is a random model of its base's shape."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from zip2zip.folders import base_tokenizer_folder

    config = json.loads((Path(model_folder) / "config.json").read_text())
    base_config = AutoConfig.for_model(**{k: v for k, v in config["base_config"].items() if k != "quantization_config"})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(base_config).save_pretrained(root / "base")
    AutoTokenizer.from_pretrained(base_tokenizer_folder(model_folder)).save_pretrained(root / "base")
    copy = root / "model"
    shutil.copytree(model_folder, copy)
    config["base_source"] = str(root / "base")
    (copy / "config.json").write_text(json.dumps(config, indent=1))
    return str(copy)


class PartTimer:
    """Wall-clock seconds of named calls, each between two device synchronisations."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.entries = 0
        self.in_step = False

    def wrap(self, name: str, function: Callable[..., Any], step: bool = False) -> Callable[..., Any]:
        """``function`` timed under ``name``; calls outside a decoding step (the prefill's) are
        not timed, except the step's own (``step=True``)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not (step or self.in_step):
                return function(*args, **kwargs)
            _sync()
            self.in_step = True
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                _sync()
                self.seconds[name] += time.perf_counter() - start
                self.in_step = not step

        return timed


@contextmanager
def timed_parts(model: Any, timer: PartTimer) -> Iterator[None]:
    """Patch the zip2zip model's step parts (instance attributes, removed afterwards)."""
    hyper, decoder = model.hyper, model.base.get_decoder()
    originals = {"encode": hyper.encode_phrases}

    def encode(lookup: Any, phrases: torch.Tensor, lengths: torch.Tensor, encoder: Any) -> torch.Tensor:
        if timer.in_step and encoder is hyper.input_encoder:
            timer.entries += int(phrases.shape[0])
        return originals["encode"](lookup, phrases, lengths, encoder)

    patched = [
        (model, "_decode_step", timer.wrap("step inside forward", model._decode_step, step=True)),
        (hyper, "input_embeddings", timer.wrap("row embeddings of the new codes", hyper.input_embeddings)),
        (hyper, "encode_phrases", timer.wrap("hyper-encoders on new entries", encode)),
        (decoder, "forward", timer.wrap("base model layers", decoder.forward)),
        (hyper, "logits", timer.wrap("logits with hypertoken rows", hyper.logits)),
    ]
    for owner, name, function in patched:
        setattr(owner, name, function)
    try:
        yield
    finally:
        for owner, name, _ in patched:
            delattr(owner, name)


def _parts_report(timer: PartTimer, total: float, steps: int) -> str:
    inside = timer.seconds.pop("step inside forward", 0.0)
    named = sum(timer.seconds.values())
    lines = [f"  {name}: {seconds / steps * 1e3:.2f} ms" for name, seconds in timer.seconds.items()]
    lines.append(f"  the rest of the step (codebook step, copies, row writes): {(inside - named) / steps * 1e3:.2f} ms")
    lines.append(f"  transformers' loop around the forward, prefill, setup: {(total - inside) / steps * 1e3:.2f} ms")
    lines.append(f"  entries created per step: {timer.entries / steps:.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m-zip2zip")
    parser.add_argument("--random-base", action="store_true", help="a random base of the base's shape (no GGUF)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tables", action="store_true", help="torch.profiler tables of one run of each")
    parser.add_argument("--rows", type=int, default=15, help="ops printed per table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = random_base_folder(args.model, Path(scratch)) if args.random_base else args.model
        device, _, tokenizer, model, base = load_pair(folder)
    base_tokenizer = tokenizer.base
    prompts = [user_text(base_tokenizer, p) for p in BENCH_PROMPTS["code"]]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    new = args.new_tokens
    print(f"{device}, {'random base' if args.random_base else 'the real base'}, {new} and {2 * new} new tokens")
    for batch_size in args.batch_sizes:
        texts = (prompts * batch_size)[:batch_size]
        for name, lm, tok in (("base", base, base_tokenizer), ("zip2zip", model, tokenizer)):
            tok.padding_side = "left"
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            _run(lm, batch, new)  # warm-up
            short = statistics.median(_run(lm, batch, new) for _ in range(args.repeats))
            long = statistics.median(_run(lm, batch, 2 * new) for _ in range(args.repeats))
            step = (long - short) / new
            print(
                f"\n## {name}, batch {batch_size}: {step * 1e3:.2f} ms per step, "
                f"{(short - new * step) * 1e3:.1f} ms fixed ({short / new * 1e3:.2f} ms per step over {new})",
                flush=True,
            )
            if name == "zip2zip":
                timer = PartTimer()
                with timed_parts(lm, timer):
                    total = _run(lm, batch, new)
                print(f"parts, timed between synchronisations ({total / new * 1e3:.2f} ms per step):")
                print(_parts_report(timer, total, new), flush=True)
            if not args.tables:
                continue
            with profile(activities=activities) as prof:
                _run(lm, batch, new)
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
