# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""``zip2zip bench generate --peers``: zip2zip against what a user would pick instead, in one run.

Every row goes through transformers' ``generate()``, the path most users call, on the same
prompts, greedy, in one process:

- ``base``: the base model;
- ``base + lookup``: the base model with transformers' prompt lookup decoding
  (``prompt_lookup_num_tokens``; transformers runs it at batch size 1 only);
- ``base + batched lookup``: the same drafts (the latest earlier occurrence of the text's last
  n-gram) at any batch size, as vLLM's n-gram proposer serves them: the base model wrapped with
  an empty codebook (K = 0, so its logits are the base's) and run through the speculation loop,
  one base token per draft code (`batched_lookup_model`);
- ``zip2zip``: the zip2zip model;
- ``zip2zip + speculation``: the zip2zip model with hypertoken speculation
  (`zip2zip.generation.speculative`, through ``generate(prompt_lookup_num_tokens=...)``);
- ``valve``: the zip2zip model writing base ids only (``output_hypertokens=False``, the safety
  valve, which keeps the base model's HumanEval score: docs/generation.md), its prompt still
  compressed;
- ``valve + drafts``: the valve with drafts from both its hypertokens and the text
  (``draft_source="both"``): lossless with respect to the valve's own greedy answers.

Three prompt sets: ``grounded`` (edit, comment or document a given source file, whose answer
repeats the input: where lookup methods are strongest; `grounded_prompts`), and the ``code`` and
``chat`` sets of the throughput mode. Reported: text bytes per second (the new text's UTF-8
bytes over the wall time of the whole set, prefill included; medians of ``repeats``), and
whether each lossless method gave the same answers as its plain run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import torch

from zip2zip.errors import UsageError
from zip2zip.evaluation.prompts import BENCH_PROMPTS, grounded_prompts, user_text
from zip2zip.files import write_atomic
from zip2zip.generation.bench import _chunks, _environment, load_pair, median_run
from zip2zip.generation.speculative import SpeculationStats, speculative_generate
from zip2zip.generation.static_loop import stop_ids

# Hypertokens written, each read back as its base ids (docs/generation.md, "Canonical inputs").
READ_BACK = "zip2zip reading base ids"
KINDS = (
    "base",
    "base + lookup",
    "base + batched lookup",
    "zip2zip",
    "zip2zip + speculation",
    "valve",
    "valve + drafts",
    READ_BACK,
)
LOOKUPS = ("base + lookup", "base + batched lookup")
# ``--kinds`` on the command line: short names of `KINDS`.
KIND_NAMES = dict(
    zip(("base", "lookup", "batched-lookup", "zip2zip", "speculation", "valve", "valve-drafts", "read-base-ids"), KINDS)
)
# The speculating kinds: the key of their draft statistics in a row, and the kind whose answers
# they must repeat (lossless).
SPECULATING = {
    "base + batched lookup": ("batched_lookup", "base"),
    "zip2zip + speculation": ("speculation", "zip2zip"),
    "valve + drafts": ("valve_drafts", "valve"),
}
# The kinds that write one code a forward pass of a row.
ONE_A_PASS = ("base", "zip2zip", "valve", READ_BACK)


def _stop_at(ids: list[int], stops: set[int]) -> list[int]:
    for i, code in enumerate(ids):
        if code in stops:
            return ids[:i]
    return ids


def _stops(model: Any, tokenizer: Any) -> set[int]:
    ids = stop_ids(model, tokenizer)
    return set() if ids is None else {ids} if isinstance(ids, int) else set(ids)


def _base_runner(base: Any, tokenizer: Any, lookup: int | None) -> Callable[[list[str], int], tuple[list[str], int]]:
    stops = _stops(base, tokenizer)

    if tokenizer.pad_token_id is None:  # a saved SmolLM2 base tokenizer names none: pad with an EOS
        tokenizer.pad_token_id = min(stops) if stops else 0

    def run(texts: list[str], max_new: int) -> tuple[list[str], int]:
        tokenizer.padding_side = "left"
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(base.device)
        extra = {} if lookup is None else {"prompt_lookup_num_tokens": lookup}
        with torch.no_grad():
            out = base.generate(**batch, max_new_tokens=max_new, do_sample=False, **extra)
        new = [_stop_at(row, stops) for row in out[:, batch["input_ids"].shape[1] :].tolist()]
        return [tokenizer.decode(ids, skip_special_tokens=True) for ids in new], sum(map(len, new))

    return run


def batched_lookup_model(base: Any, base_tokenizer: Any) -> tuple[Any, Any]:
    """The base model as a zip2zip model with an empty codebook (K = 0: its codes are base ids
    and its logits the base's), and that codebook's tokenizer: what ``generate(
    prompt_lookup_num_tokens=N)`` turns into prompt lookup decoding of the base at any batch size."""
    from zip2zip.modeling import Zip2ZipForCausalLM
    from zip2zip.tokenizer import Zip2ZipTokenizer

    tokenizer = Zip2ZipTokenizer.from_base(base_tokenizer, max_codebook_size=0)
    model: Any = Zip2ZipForCausalLM.from_base(base, tokenizer)
    return model.to(device=base.device, dtype=base.dtype).eval(), tokenizer


def _zip2zip_runner(
    model: Any, tokenizer: Any, drafts: int | None, max_draft_phrase: int | None = None, **options: Any
) -> Callable[[list[str], int], tuple[list[str], int]]:
    """``options``: more `generate()` keywords (``output_hypertokens``, ``draft_source``)."""
    stops = _stops(model, tokenizer)

    def run(texts: list[str], max_new: int) -> tuple[list[str], int]:
        tokenizer.padding_side = "left"
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        extra: dict[str, Any] = {}
        if drafts is not None:
            extra = {"prompt_lookup_num_tokens": drafts, "max_draft_phrase": max_draft_phrase}
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new, do_sample=False, **extra, **options)
        width = batch["input_ids"].shape[1]
        answers, count = [], 0
        for row in range(len(texts)):
            prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()]
            codes = _stop_at(out[row, width:].tolist(), stops)
            count += len(codes)
            answers.append(tokenizer.decode(codes, state=tokenizer.state_after(prompt), skip_special_tokens=True))
        return answers, count

    return run


def _speculation_stats(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    batch: int,
    max_new: int,
    drafts: int,
    max_draft_phrase: int | None,
    **options: Any,
) -> dict[str, float]:
    """One untimed pass of the set through `speculative_generate` (``options``: its keywords
    ``output_hypertokens``, ``draft_source``): how many drafts were accepted."""
    total = SpeculationStats()
    tokenizer.padding_side = "left"
    for chunk in _chunks(prompts, batch):
        inputs = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        out = speculative_generate(
            model,
            inputs["input_ids"],
            inputs["attention_mask"],
            max_new_tokens=max_new,
            num_draft_codes=drafts,
            max_draft_phrase=max_draft_phrase,
            **options,
        )
        for name in ("passes", "row_passes", "proposed", "accepted", "codes"):
            setattr(total, name, getattr(total, name) + getattr(out.stats, name))
    return {
        "acceptance": total.acceptance,
        "codes_per_row_pass": total.codes_per_row_pass,
        "passes": total.passes,
        "row_passes": total.row_passes,
    }


def _timed(
    run: Callable[[list[str], int], tuple[list[str], int]],
    prompts: list[str],
    batch: int,
    max_new: int,
    repeats: int,
    warm_up: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """The set in batches, once to warm up (``warm_up`` instead, when given), then ``repeats``
    times: the median run's figures."""
    runs: list[dict[str, Any]] = []
    if warm_up is not None:
        warm_up()
    for attempt in range(0 if warm_up is None else 1, repeats + 1):
        texts: list[str] = []
        tokens = 0
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        for chunk in _chunks(prompts, batch):
            answers, count = run(chunk, max_new)
            texts += answers
            tokens += count
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if attempt:
            runs.append({"seconds": time.perf_counter() - start, "texts": texts, "new_tokens": tokens})
    best = median_run(runs)
    best["bytes"] = sum(len(t.encode("utf-8")) for t in best["texts"])
    best["bytes_per_s"] = best["bytes"] / best["seconds"]
    return best


def compare_peers(
    base: Any,
    base_tokenizer: Any,
    model: Any,
    tokenizer: Any,
    sets: dict[str, list[str]],
    *,
    batch_sizes: list[int],
    max_new_tokens: int,
    repeats: int = 3,
    draft_codes: int = 8,
    lookup_tokens: int = 10,
    max_draft_phrase: int | None = None,
    kinds: tuple[str, ...] = KINDS,
    progress: Callable[[str], None] = print,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The ``kinds`` (default: all of `KINDS`; ``base`` is always run, as every ratio's
    denominator) on every set and batch size (``sets``: name -> user prompts). Batch sizes over 1
    skip ``base + lookup`` (transformers runs prompt lookup at batch size 1 only).
    ``max_draft_phrase``: the most base tokens a draft code stands for (`speculative_generate`).
    ``progress`` gets a line per kind timed; ``checkpoint`` the results so far after each row."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise UsageError(f"unknown kinds {unknown}: choose from {list(KINDS)}")
    kinds = tuple(kind for kind in KINDS if kind in kinds or kind == "base")
    results: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "draft_codes": draft_codes,
        "lookup_tokens": lookup_tokens,
        "max_draft_phrase": max_draft_phrase,
        "kinds": list(kinds),
        "sets": {},
    }
    valve: dict[str, Any] = {"output_hypertokens": False}
    # kind -> (model, tokenizer, draft codes, longest draft phrase, more generate() keywords)
    speculators: dict[str, tuple[Any, Any, int, int | None, dict[str, Any]]] = {
        "zip2zip + speculation": (model, tokenizer, draft_codes, max_draft_phrase, {}),
        "valve + drafts": (model, tokenizer, draft_codes, max_draft_phrase, {**valve, "draft_source": "both"}),
    }
    if "base + batched lookup" in kinds:
        speculators["base + batched lookup"] = (*batched_lookup_model(base, base_tokenizer), lookup_tokens, 1, {})
    runners = {
        "base": _base_runner(base, base_tokenizer, None),
        "base + lookup": _base_runner(base, base_tokenizer, lookup_tokens),
        "zip2zip": _zip2zip_runner(model, tokenizer, None),
        "valve": _zip2zip_runner(model, tokenizer, None, **valve),
        READ_BACK: _zip2zip_runner(model, tokenizer, None, canonical_inputs=True, read_output_as="base_ids"),
        **{kind: _zip2zip_runner(m, t, d, p, **o) for kind, (m, t, d, p, o) in speculators.items()},
    }
    for name, prompts in sets.items():
        rendered = [user_text(base_tokenizer, p) for p in prompts]
        for batch in batch_sizes:
            row: dict[str, Any] = {}
            for kind in kinds:
                if kind == "base + lookup" and batch > 1:
                    continue
                warm_up = None
                if kind in SPECULATING:  # the untimed pass that counts the drafts warms up too

                    def warm_up(batch: int = batch, row: dict[str, Any] = row, kind: str = kind) -> None:
                        m, t, drafts, phrase, options = speculators[kind]
                        row[SPECULATING[kind][0]] = _speculation_stats(
                            m, t, rendered, batch, max_new_tokens, drafts, phrase, **options
                        )

                row[kind] = _timed(runners[kind], rendered, batch, max_new_tokens, repeats, warm_up)
                progress(f"  {name} batch {batch}, {kind}: {row[kind]['bytes_per_s']:,.0f} B/s")
            plain = row["base"]["bytes_per_s"]
            row["ratios"] = {kind: row[kind]["bytes_per_s"] / plain for kind in KINDS if kind in row}
            if "base + lookup" in row:
                row["lookup_same_answers"] = _same(row["base + lookup"]["texts"], row["base"]["texts"])
            lookups = [row[kind]["bytes_per_s"] for kind in LOOKUPS if kind in row]
            for kind, (key, plain_kind) in SPECULATING.items():
                if kind not in row:
                    continue
                if lookups and kind not in LOOKUPS:  # against the faster of the base's lookups
                    row[f"{key}_over_lookup"] = row[kind]["bytes_per_s"] / max(lookups)
                if plain_kind in row:
                    row[f"{key}_same_answers"] = _same(row[kind]["texts"], row[plain_kind]["texts"])
            # Text per forward pass of a row, which the device does not change, the prompt's pass
            # (which gives the first code) included: one code a pass, or the prompt's pass and
            # the row passes of the untimed counting run (the same answers: greedy, lossless).
            row["bytes_per_pass"] = {
                kind: row[kind]["bytes"] / max(row[kind]["new_tokens"], 1) for kind in ONE_A_PASS if kind in row
            }
            for kind, (key, _) in SPECULATING.items():
                if kind in row and key in row:
                    passes = row[key]["row_passes"] + len(rendered)
                    row["bytes_per_pass"][kind] = row[kind]["bytes"] / passes
            if "valve" in row:  # how often the valve writes exactly the base model's answer
                row["valve_same_as_base"] = _same(row["valve"]["texts"], row["base"]["texts"])
            results["sets"][f"{name}/b{batch}"] = row
            if checkpoint is not None:
                checkpoint(results)
            progress(
                f"{name} batch {batch}: "
                + ", ".join(f"{kind} {row[kind]['bytes_per_s']:,.0f} B/s" for kind in KINDS if kind in row)
            )
    return results


def _same(texts: list[str], reference: list[str]) -> float:
    """The share of answers equal to the reference's."""
    return sum(a == b for a, b in zip(texts, reference)) / max(len(reference), 1)


def bench_peers(args: Any) -> dict[str, Any]:
    """``--peers`` mode: load the model and its base, build the sets, compare."""
    _, dtype, tokenizer, model, base = load_pair(args.model)
    count = args.prompts_per_set
    sets = {"grounded": grounded_prompts(count)}
    sets.update({name: prompts[:count] for name, prompts in BENCH_PROMPTS.items()})
    sets = {name: prompts for name, prompts in sets.items() if name in (args.sets or sets)}
    results = compare_peers(
        base,
        tokenizer.base,
        model,
        tokenizer,
        sets,
        batch_sizes=args.batch_sizes,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        draft_codes=args.draft_codes,
        lookup_tokens=args.lookup_tokens,
        max_draft_phrase=args.draft_phrase,
        kinds=tuple(KIND_NAMES[name] for name in args.kinds) if args.kinds else KINDS,
        progress=lambda line: print(line, flush=True),
        checkpoint=None if not args.json else lambda partial: write_atomic(args.json, json.dumps(partial, indent=1)),
    )
    results["environment"] = _environment()
    results["model"] = args.model
    results["dtype"] = str(dtype)
    return results


def format_peers(results: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    env = results.get("environment", {})
    lines = [
        f"{env.get('device', '')}, torch {env.get('torch', '')}, {env.get('date', '')}; transformers' generate(), "
        f"greedy, {results['max_new_tokens']} new tokens (codes for zip2zip), {results['draft_codes']} draft codes, "
        f"prompt lookup {results['lookup_tokens']} tokens, draft phrases of at most "
        f"{results.get('max_draft_phrase') or 'S'} tokens",
        "",
        "| prompts | batch | base B/s | base + lookup B/s | base + batched lookup B/s | zip2zip B/s | "
        "zip2zip + speculation B/s | speculation / base | speculation / faster lookup | drafts accepted | "
        "codes per pass | same answers (lookup, batched lookup, speculation) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in results["sets"].items():
        name, batch = key.split("/b")

        def rate(kind: str, row: dict[str, Any] = row) -> str:
            return f"{row[kind]['bytes_per_s']:,.0f}" if kind in row else "n/a"

        def share(key: str, row: dict[str, Any] = row) -> str:
            return f"{row[key]:.0%}" if key in row else "n/a"

        over_base = row["ratios"].get("zip2zip + speculation")
        over_lookup = row.get("speculation_over_lookup")
        stats = row.get("speculation")
        lines.append(
            f"| {name} | {batch} | {rate('base')} | {rate('base + lookup')} | {rate('base + batched lookup')} | "
            f"{rate('zip2zip')} | {rate('zip2zip + speculation')} | "
            f"{'n/a' if over_base is None else f'{over_base:.2f}x'} | "
            f"{'n/a' if over_lookup is None else f'{over_lookup:.2f}x'} | "
            f"{'n/a' if stats is None else format(stats['acceptance'], '.0%')} | "
            f"{'n/a' if stats is None else format(stats['codes_per_row_pass'], '.2f')} | "
            f"{share('lookup_same_answers')}, {share('batched_lookup_same_answers')}, "
            f"{share('speculation_same_answers')} |"
        )
    if any(kind in row for row in results["sets"].values() for kind in ("valve", "valve + drafts")):
        lines += ["", _valve_table(results)]
    if any(READ_BACK in row for row in results["sets"].values()):
        lines += ["", _read_back_table(results)]
    lines += ["", _pass_table(results)]
    return "\n".join(lines) + "\n" + _median_note(results)


def _set_table(
    results: dict[str, Any], intro: str, columns: list[str], cells: Callable[[dict[str, Any]], list[str]]
) -> str:
    """A Markdown table of one row per prompt set and batch size: ``intro``, then the columns
    after ``prompts`` and ``batch``, each row's cells from ``cells(row)``."""
    lines = [
        intro,
        "",
        "| prompts | batch | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for key, row in results["sets"].items():
        name, batch = key.split("/b")
        lines.append(f"| {name} | {batch} | " + " | ".join(cells(row)) + " |")
    return "\n".join(lines)


def _pass_table(results: dict[str, Any]) -> str:
    """Text bytes per forward pass of a row, for the kinds whose passes are counted."""
    counted = [kind for kind in KINDS if kind != "base + lookup"]

    def cells(row: dict[str, Any]) -> list[str]:
        per_pass = row.get("bytes_per_pass", {})
        return [f"{per_pass[kind]:.2f}" if kind in per_pass else "n/a" for kind in counted]

    intro = (
        "Text bytes per forward pass of a row (the device does not change these; a pass of the "
        "zip2zip model costs about what a base pass costs: benchmarks.md):"
    )
    return _set_table(results, intro, counted, cells)


def _read_back_table(results: dict[str, Any]) -> str:
    """Hypertokens written and read back as base ids, against the base, the full model and the valve."""

    def cells(row: dict[str, Any]) -> list[str]:
        ratios = row["ratios"]
        return [
            f"{row[READ_BACK]['bytes_per_s']:,.0f}",
            f"{ratios[READ_BACK]:.2f}x",
            *(f"{ratios[READ_BACK] / ratios[k]:.2f}x" if k in ratios else "n/a" for k in ("zip2zip", "valve")),
        ]

    intro = 'Hypertokens written, read back as base ids (`canonical_inputs=True, read_output_as="base_ids"`):'
    columns = ["B/s", "/ base", "/ zip2zip", "/ valve"]
    return _set_table(results, intro, columns, lambda row: cells(row) if READ_BACK in row else ["n/a"] * 4)


def _valve_table(results: dict[str, Any]) -> str:
    """The safety valve's rows: base ids only, alone and with drafts, against the base and its
    faster lookup."""

    def cells(row: dict[str, Any]) -> list[str]:
        lookups = [row[kind]["bytes_per_s"] for kind in LOOKUPS if kind in row]
        stats = row.get("valve_drafts")
        return [
            f"{row['base']['bytes_per_s']:,.0f}",
            f"{max(lookups):,.0f}" if lookups else "n/a",
            *(f"{row[kind]['bytes_per_s']:,.0f}" if kind in row else "n/a" for kind in ("valve", "valve + drafts")),
            f"{row['ratios']['valve + drafts']:.2f}x" if "valve + drafts" in row else "n/a",
            f"{row['valve_drafts_over_lookup']:.2f}x" if "valve_drafts_over_lookup" in row else "n/a",
            "n/a" if stats is None else f"{stats['acceptance']:.0%}",
            "n/a" if stats is None else f"{stats['codes_per_row_pass']:.2f}",
            *(f"{row[k]:.0%}" if k in row else "n/a" for k in ("valve_same_as_base", "valve_drafts_same_answers")),
        ]

    columns = [
        "base B/s",
        "faster lookup B/s",
        "valve B/s",
        "valve + drafts B/s",
        "drafts / base",
        "drafts / faster lookup",
        "drafts accepted",
        "codes per pass",
        "valve's answers = base's",
        "drafts' answers = valve's",
    ]
    intro = (
        "The safety valve (base ids only, the prompt compressed), alone and with drafts from its "
        "hypertokens and the text:"
    )
    return _set_table(results, intro, columns, cells)


def _median_note(results: dict[str, Any]) -> str:
    spreads = [
        max(r["seconds_all"]) / min(r["seconds_all"])
        for row in results["sets"].values()
        for kind, r in row.items()
        if kind in KINDS and min(r["seconds_all"]) > 0
    ]
    return f"\n(timed runs per row: medians; the widest spread between a row's runs: {max(spreads, default=1.0):.2f}x)"
