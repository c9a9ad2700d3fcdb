# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""``zip2zip bench generate --model DIR --same-text``: the decoding cost of one fixed text.

The throughput mode lets each model write its own answer, so its figures mix decoding speed
with answer length and loops. Here both models produce the same text: the base model's greedy
answer to each prompt (the *reference*). Both run it through the static decoding loop as a forced
stream (`StaticGenerator.generate(forced=...)`): the base model feeds the reference's tokens, the
zip2zip model the codes the encoder cuts from those tokens after reading the prompt
(`reference_codes`: the longest phrase the codebook holds at each point, the codebook growing
with the text). The texts are checked to be equal, so the ratio of bytes per second is the
decoding cost alone, and its ratio to the compression (base tokens per code) says how much of
the compression reaches the wall clock: 1.0 when a zip2zip step costs what a base step does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from zip2zip.evaluation.prompts import BENCH_PROMPTS, user_text
from zip2zip.generation.bench import _chunks, _environment, load_pair, median_run
from zip2zip.generation.speculative import PhraseIndex, _cut, _Draft
from zip2zip.generation.static import StaticGenerator
from zip2zip.tokenizer import Zip2ZipTokenizer


def reference_codes(tokenizer: Zip2ZipTokenizer, prompt_codes: Sequence[int], ids: Sequence[int]) -> list[int]:
    """The codes that stand for base ``ids`` written after ``prompt_codes``: cut as the encoder
    cuts text, from the codebook the prompt left (but that a KwKwK phrase, which the encoder
    may use one code early, is cut as the entries the decoder holds)."""
    state = tokenizer.state_after(list(prompt_codes))
    phrases = PhraseIndex()
    phrases.update(state)
    draft = _Draft()
    _cut(state, phrases, [int(i) for i in ids], len(ids), draft)
    return draft.codes


def _references(base: Any, base_tokenizer: Any, prompts: list[list[int]], batch: int, budget: int) -> list[list[int]]:
    """The base model's greedy answer to each prompt (ids, without the EOS)."""
    generator = StaticGenerator.for_base(
        base, base_tokenizer, batch_size=batch, max_cache_len=max(map(len, prompts)) + budget + 1
    )
    answers: list[list[int]] = []
    for chunk in _chunks(prompts, batch):
        answers += generator.generate(chunk, max_new_base_tokens=budget).tokens
    return answers


def _timed_forced(
    generator: Any, prompts: list[list[int]], forced: list[list[int]], batch: int, repeats: int
) -> dict[str, Any]:
    """The forced streams in batches, once to warm up, then ``repeats`` times: the median run."""
    runs = []
    for attempt in range(repeats + 1):
        run: dict[str, Any] = {"seconds": 0.0, "decode_s": 0.0, "steps": 0, "tokens": 0, "bytes": 0, "texts": []}
        for chunk, streams in zip(_chunks(prompts, batch), _chunks(forced, batch)):
            out = generator.generate(chunk, max_new_base_tokens=10**9, forced=streams)
            run["seconds"] += out.seconds
            run["decode_s"] += out.decode_seconds
            run["steps"] += out.steps
            run["tokens"] += sum(map(len, out.tokens))
            run["bytes"] += out.text_bytes
            run["texts"] += out.texts
        if attempt:
            runs.append(run)
    best = median_run(runs)
    best["bytes_per_s"] = best["bytes"] / best["seconds"]
    best["decode_us_per_byte"] = best["decode_s"] / max(best["bytes"], 1) * 1e6
    return best


def compare_same_text(
    base: Any,
    base_tokenizer: Any,
    model: Any,
    tokenizer: Zip2ZipTokenizer,
    sets: dict[str, list[str]],
    *,
    batch_sizes: list[int],
    max_new_tokens: int,
    repeats: int = 3,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both models on the base model's answers to ``sets`` (name -> user prompts), at each batch
    size. A reference is made once per prompt, at the largest batch size; prompts whose answer is
    empty are left out."""
    results: dict[str, Any] = {"max_new_tokens": max_new_tokens, "sets": {}}
    for name, prompts in sets.items():
        rendered = [user_text(base_tokenizer, p) for p in prompts]
        base_prompts = [list(base_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in rendered]
        zip_prompts = [list(tokenizer.encode(t, add_special_tokens=False)) for t in rendered]
        answers = _references(base, base_tokenizer, base_prompts, max(batch_sizes), max_new_tokens)
        kept = [i for i, a in enumerate(answers) if a]
        base_prompts, zip_prompts = [base_prompts[i] for i in kept], [zip_prompts[i] for i in kept]
        base_forced = [answers[i] for i in kept]
        zip_forced = [reference_codes(tokenizer, p, a) for p, a in zip(zip_prompts, base_forced)]
        for batch in batch_sizes:
            row: dict[str, Any] = {"prompts": len(kept)}
            for kind, gen_model, tok, ids, forced in (
                ("base", base, base_tokenizer, base_prompts, base_forced),
                ("zip2zip", model, tokenizer, zip_prompts, zip_forced),
            ):
                make = StaticGenerator.for_base if kind == "base" else StaticGenerator.for_zip2zip
                longest = max(map(len, ids)) + max(map(len, forced)) + 2
                generator = make(gen_model, tok, batch_size=batch, max_cache_len=longest)
                row[kind] = _timed_forced(generator, ids, forced, batch, repeats)
                del generator
            b, z = row["base"], row["zip2zip"]
            row["same_text"] = z["texts"] == b["texts"]
            row["compression"] = b["tokens"] / max(z["tokens"], 1)
            row["speedup"] = z["bytes_per_s"] / b["bytes_per_s"]
            row["decode_speedup"] = b["decode_us_per_byte"] / z["decode_us_per_byte"]
            row["speedup_over_compression"] = row["decode_speedup"] / row["compression"]
            results["sets"][f"{name}/b{batch}"] = row
            progress(
                f"{name} batch {batch}: compression {row['compression']:.2f}, decoding x{row['decode_speedup']:.2f} "
                f"({row['speedup_over_compression']:.2f} of the compression), same text: {row['same_text']}"
            )
    return results


def bench_same_text(args: Any) -> dict[str, Any]:
    """``--same-text`` mode: load the model and its base, compare on the code and chat sets."""
    _, dtype, tokenizer, model, base = load_pair(args.model)
    count = max(max(args.batch_sizes), args.prompts_per_set)
    sets = {name: prompts[:count] for name, prompts in BENCH_PROMPTS.items()}
    results = compare_same_text(
        base,
        tokenizer.base,
        model,
        tokenizer,
        sets,
        batch_sizes=args.batch_sizes,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
    )
    results.update(environment=_environment(), model=args.model, dtype=str(dtype))
    return results


def format_same_text(results: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    env = results.get("environment", {})
    lines = [
        f"{env.get('device', '')}, torch {env.get('torch', '')}, {env.get('date', '')}; static loop, the base "
        f"model's greedy answers ({results['max_new_tokens']} tokens at most) fed to both models",
        "",
        "| prompts | batch | answers | base tokens per code | base µs/B | zip2zip µs/B | decoding speed-up | "
        "of the compression | bytes/s speed-up (prefill included) | same text |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in results["sets"].items():
        name, batch = key.split("/b")
        b, z = row["base"], row["zip2zip"]
        lines.append(
            f"| {name} | {batch} | {row['prompts']} | {row['compression']:.2f} | {b['decode_us_per_byte']:.1f} | "
            f"{z['decode_us_per_byte']:.1f} | {row['decode_speedup']:.2f}x | {row['speedup_over_compression']:.2f} | "
            f"{row['speedup']:.2f}x | {'yes' if row['same_text'] else 'NO'} |"
        )
    spread = max(
        (
            max(r["seconds_all"]) / min(r["seconds_all"])
            for row in results["sets"].values()
            for r in (row["base"], row["zip2zip"])
            if min(r["seconds_all"]) > 0
        ),
        default=1.0,
    )
    lines.append(f"\n(medians of the timed runs; the widest spread between a row's runs: {spread:.2f}x)")
    return "\n".join(lines)
