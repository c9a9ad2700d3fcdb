# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""``zip2zip bench generate``: end-to-end generation speed, base model against zip2zip model.

Two modes, both through `zip2zip.generation.StaticGenerator` (static KV cache, one CUDA graph per
step) so that the two models run the same loop with the same settings:

- ``--model DIR``: a trained zip2zip model and its base, greedy, on code and chat prompts at
  the given batch sizes. Reports text throughput (UTF-8 bytes generated per second, prefill
  included), decoding steps, prefill time and KV-cache bytes; and the prefill time and KV-cache
  bytes of one long prompt from the corpus.
- ``--shapes 1b 8b``: random-weight Llama models of those shapes, fed a given code stream (a
  corpus text, compressed) so that both do the same number of steps: step latency of zip2zip
  over base, and the speed-up projected at the measured generation compression.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch

from zip2zip.corpus import corpus_files
from zip2zip.errors import UsageError
from zip2zip.evaluation.prompts import BENCH_PROMPTS, user_text
from zip2zip.generation.static import StaticGenerator
from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.shapes import LLAMA_SHAPES
from zip2zip.sources import load_base_model, load_smollm2_tokenizer
from zip2zip.tokenizer import Zip2ZipTokenizer

# The random-weight shapes step latency is measured on.
SHAPES = LLAMA_SHAPES


def _environment() -> dict[str, Any]:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"device": device, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_set(generator: Any, prompts: list[list[int]], batch_size: int, budget: int) -> dict[str, Any]:
    """Generate every prompt (in batches); totals of bytes, steps, seconds."""
    totals: dict[str, Any] = {
        "bytes": 0,
        "steps": 0,
        "prefill_s": 0.0,
        "seconds": 0.0,
        "tokens": 0,
        "base_tokens": 0,
        "calls": 0,
    }
    texts = []
    for chunk in _chunks(prompts, batch_size):
        out = generator.generate(chunk, max_new_base_tokens=budget)
        totals["bytes"] += out.text_bytes
        totals["steps"] += out.steps
        totals["prefill_s"] += out.prefill_seconds
        totals["seconds"] += out.seconds
        totals["tokens"] += sum(len(t) for t in out.tokens)
        totals["base_tokens"] += sum(out.base_tokens)
        totals["calls"] += 1
        texts += out.texts
    totals["texts"] = texts
    return totals


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median ``seconds`` (a whole run, so that its texts come with it), with every
    run's seconds as ``seconds_all``."""
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    best["seconds_all"] = [r["seconds"] for r in runs]
    return best


def _median_run(generator: Any, prompts: list[list[int]], batch_size: int, budget: int, repeats: int) -> dict[str, Any]:
    _run_set(generator, prompts, batch_size, budget)  # warm-up: captures the graphs
    return median_run([_run_set(generator, prompts, batch_size, budget) for _ in range(repeats)])


def load_pair(folder: str) -> tuple[torch.device, torch.dtype, Zip2ZipTokenizer, Any, Any]:
    """A zip2zip model folder's tokenizer, its model (LoRA merged) and its base model, on the GPU in
    bf16 when there is one (else the CPU in fp32), in eval mode."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = Zip2ZipTokenizer.from_pretrained(folder)
    model: Any = Zip2ZipForCausalLM.from_pretrained(folder, dtype=dtype)
    if model.has_adapter:
        model.merge_lora()
    model = model.to(device).eval()
    base: Any = load_base_model(model.config.base_source, dtype=dtype)
    return device, dtype, tokenizer, model, base.to(device).eval()


def bench_model(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput mode: the trained model against its base on the prompt sets."""

    device, dtype, tokenizer, model, base = load_pair(args.model)
    base_tokenizer = tokenizer.base
    budget = args.max_new_tokens
    valve, marginal = bool(getattr(args, "valve", False)), bool(getattr(args, "marginal", False))
    if marginal:
        model.config.marginal_first_token = True
    results: dict[str, Any] = {
        "environment": _environment(),
        "model": args.model,
        "max_new_tokens": budget,
        "dtype": str(dtype),
        "prefill_graphs": args.prefill_graphs,
        "valve": valve,
        "marginal_first_token": marginal,
        "sets": {},
        "long_prompt": None,
    }
    for name, prompts in BENCH_PROMPTS.items():
        rendered = [user_text(base_tokenizer, p) for p in prompts]
        base_prompts = [base_tokenizer(t, add_special_tokens=False)["input_ids"] for t in rendered]
        zip_prompts = [tokenizer.encode(t, add_special_tokens=False) for t in rendered]
        longest = max(len(p) for p in base_prompts)
        for batch_size in args.batch_sizes:
            chosen = slice(0, max(batch_size, min(args.prompts_per_set, len(prompts))))
            row: dict[str, Any] = {}
            for kind, gen_model, tok, prompt_ids in (
                ("base", base, base_tokenizer, base_prompts),
                ("zip2zip", model, tokenizer, zip_prompts),
            ):
                size = {"batch_size": batch_size, "max_cache_len": longest + budget + 1}
                generator: StaticGenerator
                if kind == "base":
                    generator = StaticGenerator.for_base(gen_model, tok, **size, prefill_graphs=args.prefill_graphs)
                else:
                    generator = StaticGenerator.for_zip2zip(
                        gen_model, tok, **size, prefill_graphs=args.prefill_graphs, output_hypertokens=not valve
                    )
                row[kind] = _median_run(generator, prompt_ids[chosen], batch_size, budget, args.repeats)
                del generator
                torch.cuda.empty_cache() if device.type == "cuda" else None
            for kind in ("base", "zip2zip"):
                r = row[kind]
                r["bytes_per_s"] = r["bytes"] / r["seconds"]
            row["speedup"] = row["zip2zip"]["bytes_per_s"] / row["base"]["bytes_per_s"]
            row["zip2zip"]["base_tokens_per_code"] = row["zip2zip"]["base_tokens"] / max(row["zip2zip"]["tokens"], 1)
            results["sets"][f"{name}/b{batch_size}"] = row
            print(
                f"{name} batch {batch_size}: base {row['base']['bytes_per_s']:,.0f} B/s, "
                f"zip2zip {row['zip2zip']['bytes_per_s']:,.0f} B/s, x{row['speedup']:.2f}",
                flush=True,
            )
    if args.long_prompt_tokens:
        results["long_prompt"] = _long_prompt(args, base, base_tokenizer, model, tokenizer)
    return results


def _long_prompt(
    args: argparse.Namespace, base: Any, base_tokenizer: Any, model: Any, tokenizer: Any
) -> dict[str, Any]:
    """Prefill time and KV-cache bytes of one long prompt (the start of the code corpus)."""

    text = next(f for f in corpus_files() if f.domain == "code").read()
    ids = base_tokenizer(text[: args.long_prompt_tokens * 8], add_special_tokens=False)["input_ids"][
        : args.long_prompt_tokens
    ]
    prompt_text = base_tokenizer.decode(ids)
    ids = base_tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    codes = tokenizer.encode(prompt_text, add_special_tokens=False)
    out: dict[str, Any] = {"base_tokens": len(ids), "codes": len(codes), "input_compression": len(ids) / len(codes)}
    graphs = (False, True) if torch.cuda.is_available() else (False,)
    for kind, gen_model, tok, prompt in (("base", base, base_tokenizer, ids), ("zip2zip", model, tokenizer, codes)):
        make = StaticGenerator.for_base if kind == "base" else StaticGenerator.for_zip2zip
        out[kind] = {}
        for graphed in graphs:
            generator = make(gen_model, tok, batch_size=1, max_cache_len=len(prompt) + 2, prefill_graphs=graphed)
            # One prefill is short and its time varies from call to call: at least 10 repeats.
            runs = [generator.generate([prompt], max_new_base_tokens=1) for _ in range(max(args.repeats, 10) + 1)][1:]
            out[kind]["prefill_graph_s" if graphed else "prefill_s"] = statistics.median(
                r.prefill_seconds for r in runs
            )
            out[kind]["kv_cache_bytes"] = runs[0].kv_bytes_per_position * runs[0].prompt_positions
            del generator
    if len(graphs) == 2:
        out["prefill_graph_ratio"] = out["base"]["prefill_graph_s"] / out["zip2zip"]["prefill_graph_s"]
    out["prefill_ratio"] = out["base"]["prefill_s"] / out["zip2zip"]["prefill_s"]
    out["kv_ratio"] = out["base"]["kv_cache_bytes"] / out["zip2zip"]["kv_cache_bytes"]
    return out


def bench_shapes(args: argparse.Namespace) -> dict[str, Any]:
    """Step-latency mode on random-weight Llama shapes, fed a compressed corpus text."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    if not torch.cuda.is_available():
        raise UsageError("the shapes mode needs a CUDA device")
    device = torch.device("cuda")
    base_tokenizer = load_smollm2_tokenizer()
    text = next(f for f in corpus_files() if f.domain == "code").read()
    results: dict[str, Any] = {
        "environment": _environment(),
        "steps": args.steps,
        "context": args.context,
        "shapes": {},
    }
    for shape in args.shapes:
        config = LlamaConfig(**SHAPES[shape])
        tokenizer = Zip2ZipTokenizer.from_base(base_tokenizer, vocab_size=config.vocab_size, max_codebook_size=2048)
        torch.manual_seed(0)
        with torch.device(device):
            base: Any = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
        model: Any = Zip2ZipForCausalLM.from_base(
            base, tokenizer, base_source="random", encoder_layers=1, encoder_latent_size=192
        ).eval()
        rows: dict[str, Any] = {}
        for batch_size in args.batch_sizes:
            # Each row: another stretch of the corpus; the prompt is its first `context` base tokens.
            stretch = len(text) // batch_size
            base_prompts, base_forced, zip_prompts, zip_forced = [], [], [], []
            for row in range(batch_size):
                piece = text[row * stretch : row * stretch + 40 * (args.context + 4 * args.steps)]
                ids = base_tokenizer(piece, add_special_tokens=False)["input_ids"]
                base_prompts.append(ids[: args.context])
                base_forced.append(ids[args.context : args.context + args.steps])
                encoding = tokenizer.encode_ids(ids)
                codes = np.asarray(encoding.codes, dtype=np.int64)
                entry_lengths = np.append(np.asarray(encoding.codebook_lengths, dtype=np.int64), 1)
                hyper = codes >= config.vocab_size
                spans = np.where(hyper, entry_lengths[np.where(hyper, codes - config.vocab_size, 0)], 1)
                cut = int((spans.cumsum() <= args.context).sum())
                codes = codes.tolist()
                zip_prompts.append(codes[:cut])
                zip_forced.append(codes[cut : cut + args.steps])
            measured: dict[str, Any] = {}
            for kind, gen_model, tok, prompts, forced in (
                ("base", base, base_tokenizer, base_prompts, base_forced),
                ("zip2zip", model, tokenizer, zip_prompts, zip_forced),
            ):
                make = StaticGenerator.for_base if kind == "base" else StaticGenerator.for_zip2zip
                longest = max(len(p) for p in prompts)
                generator = make(gen_model, tok, batch_size=batch_size, max_cache_len=longest + args.steps + 1)
                generator.generate(prompts, max_new_base_tokens=10**9, forced=forced)  # warm-up
                runs = [
                    generator.generate(prompts, max_new_base_tokens=10**9, forced=forced) for _ in range(args.repeats)
                ]
                step = statistics.median(r.decode_seconds / max(r.steps, 1) for r in runs)
                measured[kind] = {
                    "step_s": step,
                    "steps": runs[0].steps,
                    "base_tokens": sum(runs[0].base_tokens),
                    "tokens": sum(len(t) for t in runs[0].tokens),
                }
                del generator
                torch.cuda.empty_cache()
            measured["step_ratio"] = measured["zip2zip"]["step_s"] / measured["base"]["step_s"]
            stream_compression = measured["zip2zip"]["base_tokens"] / max(measured["zip2zip"]["tokens"], 1)
            measured["stream_compression"] = stream_compression
            measured["projected_speedup"] = {
                f"{c:.2f}": c / measured["step_ratio"] for c in [stream_compression, *args.compression]
            }
            rows[f"b{batch_size}"] = measured
            print(
                f"{shape} batch {batch_size}: base {measured['base']['step_s'] * 1e3:.2f} ms/step, zip2zip "
                f"{measured['zip2zip']['step_s'] * 1e3:.2f} ms/step, x{measured['step_ratio']:.3f}",
                flush=True,
            )
        results["shapes"][shape] = rows
        del model, base
        torch.cuda.empty_cache()
    return results


def format_results(results: dict[str, Any]) -> str:
    """Markdown tables of either mode's results."""
    lines = [
        f"{results['environment']['device']}, torch {results['environment']['torch']}, {results['environment']['date']}",
        "",
    ]
    if "sets" in results:
        modes = [
            m
            for m, on in (
                ("base ids only (the valve)", results.get("valve")),
                ("the marginal's first token", results.get("marginal_first_token")),
            )
            if on
        ]
        if modes:
            lines += [f"zip2zip writing {', '.join(modes)}", ""]
        lines += [
            "| prompts | batch | base bytes/s | zip2zip bytes/s | speed-up | base steps | zip2zip steps | "
            "base tokens per code | base prefill ms | zip2zip prefill ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, row in results["sets"].items():
            name, batch = key.split("/b")
            b, z = row["base"], row["zip2zip"]
            lines.append(
                f"| {name} | {batch} | {b['bytes_per_s']:,.0f} | {z['bytes_per_s']:,.0f} | {row['speedup']:.2f}x | "
                f"{b['steps']:,} | {z['steps']:,} | {z['base_tokens_per_code']:.2f} | "
                f"{b['prefill_s'] / b['calls'] * 1e3:.1f} | {z['prefill_s'] / z['calls'] * 1e3:.1f} |"
            )
        long = results.get("long_prompt")
        if long:
            lines += [
                "",
                "| long prompt | base tokens | codes | input compression | prefill | base ms | zip2zip ms | "
                "speed-up | base KV MiB | zip2zip KV MiB | KV reduction |",
                "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
            ]
            for label, key, ratio in (
                ("eager", "prefill_s", "prefill_ratio"),
                ("CUDA graph", "prefill_graph_s", "prefill_graph_ratio"),
            ):
                if ratio in long:
                    lines.append(
                        f"| code corpus | {long['base_tokens']:,} | {long['codes']:,} | {long['input_compression']:.3f} | "
                        f"{label} | {long['base'][key] * 1e3:.2f} | {long['zip2zip'][key] * 1e3:.2f} | "
                        f"{long[ratio]:.3f}x | {long['base']['kv_cache_bytes'] / 2**20:.1f} | "
                        f"{long['zip2zip']['kv_cache_bytes'] / 2**20:.1f} | {long['kv_ratio']:.3f}x |"
                    )
    if "shapes" in results:
        lines += [
            "| shape | batch | base ms/step | zip2zip ms/step | zip2zip/base | stream base tokens per code | projected speed-up |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for shape, rows in results["shapes"].items():
            for key, m in rows.items():
                projected = ", ".join(f"{v:.2f}x at {c}" for c, v in m["projected_speedup"].items())
                lines.append(
                    f"| {shape} | {key[1:]} | {m['base']['step_s'] * 1e3:.3f} | {m['zip2zip']['step_s'] * 1e3:.3f} | "
                    f"{m['step_ratio']:.3f} | {m['stream_compression']:.3f} | {projected} |"
                )
    return "\n".join(lines)
