"""``zip2zip eval``: a zip2zip model against its own base model (DESIGN.md section 7).

* Bits per byte on held-out text, per domain (a file's domain is its folder's name): the text is
  tokenized, cut into windows of ``--window`` base tokens; the base model (the adapter disabled)
  scores tokens 1.. of each window, the zip2zip model scores codes 1.. of the window's canonical
  encoding (strict: one segmentation, the one the tokenizer gives). Bytes are those of the
  scored tokens or codes. A code whose entry is not installed when it is read (the rare KwKwK
  case) cannot be predicted at all; it is left out with its bytes, and counted.
* Input compression: base tokens per code of the same windows.
* With ``--answers``: both models' answers to code tasks and fact questions that a program
  checks (`zip2zip.answers`): how many are right.
* Generation compression: base tokens per generated code, greedy, on built-in chat and code
  prompts. Next to it, what the tokenizer makes of the same answers: base tokens per code of
  their canonical encoding after the prompt (the longest installed match at every step). A model
  that always picks the longest match reaches it exactly; only a segmentation other than the
  greedy one could do better, so on a short answer with few repeats the figure is low whatever
  the model does.

``--plot FILE.svg`` also draws the per-domain bits per byte of both models and the input
compression as a self-contained SVG (no plotting library needed).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zip2zip.files import write_atomic

# Held out: none of these is among the self-distillation prompts of scripts/distill.py.
PROMPTS = {
    "chat": [
        "What is the capital of France?",
        "Give me three tips for staying focused while studying.",
        "Explain what a hash table is in two sentences.",
        "Write a short thank-you note to a colleague who helped me move.",
    ],
    "code": [
        "Write a Python function that returns the sum of the digits of a number.",
        "Write a Python function that checks whether a year is a leap year.",
        "Write a JavaScript function that capitalises every word of a sentence.",
        "Write a Python class for a bank account with deposit and withdraw methods.",
    ],
}


@contextlib.contextmanager
def base_only(model: Any) -> Iterator[Any]:
    """The wrapped base model with its adapter (if any) disabled."""
    if model.has_adapter:
        with model.base.disable_adapter():
            yield model.base
    else:
        yield model.base


def _device(model: Any) -> torch.device:
    device: torch.device = next(model.parameters()).device
    return device


def score_text(model: Any, tokenizer: Any, text: str, window: int, max_windows: int | None = None) -> dict[str, float]:
    """Sums over the windows of ``text``: base and zip2zip NLL (nats), scored bytes, tokens,
    codes, KwKwK codes left out."""
    from zip2zip.data import code_lengths

    base = tokenizer.base
    ids = base.backend_tokenizer.encode(text, add_special_tokens=False).ids
    device = _device(model)
    vocab = tokenizer.vocab_size
    totals = dict(base_nats=0.0, base_bytes=0, zip_nats=0.0, zip_bytes=0, tokens=0, codes=0, kwkwk=0)
    starts = range(0, max(len(ids) - 1, 0), window)
    for number, start in enumerate(starts):
        if max_windows is not None and number >= max_windows:
            break
        piece = ids[start : start + window]
        if len(piece) < 2:
            continue
        tensor = torch.tensor([piece], device=device)
        with torch.no_grad(), base_only(model) as plain:
            logits = plain(input_ids=tensor).logits[0, :-1].float()
        totals["base_nats"] += float(F.cross_entropy(logits, tensor[0, 1:], reduction="sum"))
        totals["base_bytes"] += len(base.decode(piece[1:]).encode("utf-8"))
        totals["tokens"] += len(piece)

        encoding = tokenizer.encode_ids(piece)
        codes = torch.from_numpy(encoding.codes.astype("int64"))
        installed = torch.from_numpy(encoding.installed.astype("int64"))
        lengths = code_lengths(encoding, vocab)
        # Code t+1 is predictable only if its entry was installed after code t.
        predictable = codes[1:] < vocab + installed[:-1]
        labels = codes.clone()
        labels[1:][~predictable] = -100
        batch = {
            "input_ids": codes[None].to(device),
            "installed": installed[None].to(device),
            "codebook": torch.from_numpy(encoding.codebook.astype("int64"))[None].to(device),
            "codebook_lengths": torch.from_numpy(encoding.codebook_lengths.astype("int64"))[None].to(device),
        }
        with torch.no_grad():
            loss = model(**batch, labels=labels[None].to(device), return_logits=False).loss
        count = int(predictable.sum())
        totals["zip_nats"] += float(loss) * count
        expanded = tokenizer.expand(encoding.codes)
        scored_tokens = expanded[int(lengths[0]) :]
        totals["zip_bytes"] += len(base.decode(scored_tokens.tolist()).encode("utf-8"))
        left_out = (~predictable).nonzero()[:, 0] + 1
        if len(left_out):
            totals["kwkwk"] += len(left_out)
            ends = lengths.cumsum()
            for position in left_out.tolist():
                phrase = expanded[int(ends[position] - lengths[position]) : int(ends[position])]
                totals["zip_bytes"] -= len(base.decode(phrase.tolist()).encode("utf-8"))
        totals["codes"] += len(codes)
    return totals


def canonical_codes(tokenizer: Any, prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> int:
    """Codes the canonical encoding of ``prompt_ids + answer_ids`` spends on the answer: those
    that end inside it (a code spanning the boundary counts for the answer)."""
    from zip2zip.data import code_lengths

    encoding = tokenizer.encode_ids(np.asarray(list(prompt_ids) + list(answer_ids), dtype=np.uint32))
    ends = code_lengths(encoding, tokenizer.vocab_size).cumsum()
    return int((ends > len(prompt_ids)).sum())


def generation_compression(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_codes: int) -> dict[str, Any]:
    """Base tokens per generated code (greedy), the same for the canonical encoding of the
    answers, and the answers."""
    device = _device(model)
    generated_codes = generated_tokens = canonical_total = 0
    answers = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        batch = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_codes, do_sample=False)
        prompt_codes = batch["input_ids"][0].tolist()
        new = out[0, len(prompt_codes) :].tolist()
        state = tokenizer.state_after(prompt_codes)
        tokens = tokenizer.expand(new, state)
        canonical = canonical_codes(tokenizer, tokenizer.expand(prompt_codes).tolist(), tokens.tolist())
        generated_codes += len(new)
        generated_tokens += len(tokens)
        canonical_total += canonical
        answers.append({"prompt": prompt, "codes": len(new), "base_tokens": len(tokens), "canonical_codes": canonical,
                        "text": tokenizer.decode(new, state=state)})
    return {"codes": generated_codes, "base_tokens": generated_tokens,
            "tokens_per_code": generated_tokens / max(generated_codes, 1), "canonical_codes": canonical_total,
            "canonical_tokens_per_code": generated_tokens / max(canonical_total, 1), "answers": answers}


def evaluate(model: Any, tokenizer: Any, files: Sequence[str], *, window: int = 1024, max_windows: int | None = None,
             prompts: dict[str, list[str]] | None = None, max_new_codes: int = 64) -> dict[str, Any]:
    """Per-domain scores and generation compression; see the module's docstring."""
    domains: dict[str, dict[str, float]] = {}
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no such evaluation file: {path}")
        scores = score_text(model, tokenizer, path.read_text(encoding="utf-8", errors="replace"), window, max_windows)
        sums = domains.setdefault(path.parent.name or "text", {k: 0.0 for k in scores})
        for key, value in scores.items():
            sums[key] += value
    rows: dict[str, dict[str, float]] = {}
    for domain, t in domains.items():
        rows[domain] = {
            **t,
            "base_bpb": t["base_nats"] / max(t["base_bytes"], 1) / math.log(2),
            "zip_bpb": t["zip_nats"] / max(t["zip_bytes"], 1) / math.log(2),
            "input_compression": t["tokens"] / max(t["codes"], 1),
        }
        rows[domain]["bpb_ratio"] = rows[domain]["zip_bpb"] / max(rows[domain]["base_bpb"], 1e-12)
    generation = {name: generation_compression(model, tokenizer, ps, max_new_codes) for name, ps in (prompts or {}).items()}
    return {"domains": rows, "generation": generation}


def format_report(report: dict[str, Any]) -> str:
    lines = ["| domain | base tokens | codes | input compression | base bits/byte | zip2zip bits/byte | ratio | KwKwK left out |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for domain, r in report["domains"].items():
        lines.append(f"| {domain} | {int(r['tokens']):,} | {int(r['codes']):,} | {r['input_compression']:.3f} | "
                     f"{r['base_bpb']:.4f} | {r['zip_bpb']:.4f} | {r['bpb_ratio']:.3f} | {int(r['kwkwk'])} |")
    if report["generation"]:
        lines += ["", "| prompts | generated codes | base tokens | base tokens per code | tokenizer on the answers |",
                  "|---|---:|---:|---:|---:|"]
        for name, g in report["generation"].items():
            lines.append(f"| {name} | {g['codes']} | {g['base_tokens']} | {g['tokens_per_code']:.3f} | "
                         f"{g['canonical_tokens_per_code']:.3f} |")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def plot_svg(report: dict[str, Any], title: str = "zip2zip eval") -> str:
    """An SVG bar chart of a report: per domain, base and zip2zip bits per byte side by side
    (left axis) and the input compression written above each pair."""
    domains = list(report["domains"].items())
    width, height, left, bottom, top = 120 + 110 * max(len(domains), 1), 360, 60, 60, 50
    plot_height = height - bottom - top
    largest = max([max(r["base_bpb"], r["zip_bpb"]) for _, r in domains] + [1e-9])
    scale = plot_height / (largest * 1.15)
    colours = {"base": "#7f8c8d", "zip2zip": "#2e86de"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12">', f'<title>{_escape(title)}</title>',
             f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="14">{_escape(title)}: bits per byte '
             f'by domain (lower is better)</text>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" stroke="black"/>']
    for tick in range(5):
        value = largest * 1.15 * tick / 4
        y = height - bottom - value * scale
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#ddd"/>')
    for i, (domain, row) in enumerate(domains):
        x = left + 20 + 110 * i
        for j, (name, key) in enumerate((("base", "base_bpb"), ("zip2zip", "zip_bpb"))):
            bar = row[key] * scale
            parts.append(f'<rect class="{name}" x="{x + 36 * j}" y="{height - bottom - bar:.1f}" width="32" '
                         f'height="{bar:.1f}" fill="{colours[name]}"><title>{_escape(domain)} {name}: '
                         f'{row[key]:.4f} bits/byte</title></rect>')
            parts.append(f'<text x="{x + 36 * j + 16}" y="{height - bottom - bar - 4:.1f}" text-anchor="middle" '
                         f'font-size="10">{row[key]:.3f}</text>')
        parts.append(f'<text x="{x + 34}" y="{height - bottom + 16}" text-anchor="middle">{_escape(domain)}</text>')
        parts.append(f'<text x="{x + 34}" y="{height - bottom + 32}" text-anchor="middle" font-size="10">'
                     f'{row["input_compression"]:.2f} tokens/code</text>')
    for j, name in enumerate(colours):
        parts.append(f'<rect x="{width - 200 + 90 * j}" y="30" width="12" height="12" fill="{colours[name]}"/>')
        parts.append(f'<text x="{width - 184 + 90 * j}" y="41">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def add_arguments(parser: Any) -> None:
    """The ``zip2zip eval`` command line."""
    parser.add_argument("--model", required=True, help="a folder written by zip2zip train (or save_pretrained)")
    parser.add_argument("--data", nargs="+", required=True, help="text files; the folder name is the domain")
    parser.add_argument("--window", type=int, default=1024, help="base tokens per scored window")
    parser.add_argument("--max-windows", type=int, default=None, help="windows per file at most")
    parser.add_argument("--prompts", choices=["none", "builtin"], default="builtin", help="generation prompts")
    parser.add_argument("--max-new-codes", type=int, default=64)
    parser.add_argument("--json", help="also write the full report (answers included) here")
    parser.add_argument("--plot", metavar="FILE.svg", help="also draw bits per byte per domain as an SVG chart")
    parser.add_argument("--bf16", action="store_true", help="run in bf16")
    parser.add_argument("--answers", action="store_true",
                        help="also check both models' answers to code tasks (run against tests) and fact questions "
                             "(zip2zip.answers); runs the generated code in a separate interpreter")
    parser.add_argument("--humaneval", type=int, nargs="?", const=0, default=None, metavar="N",
                        help="also run HumanEval (zip2zip.humaneval) for both models, greedy: all 164 problems, or the "
                             "first N; runs the generated code in a separate interpreter")
    parser.add_argument("--humaneval-data", metavar="FILE", help="HumanEval.jsonl(.gz) (default: see zip2zip.humaneval)")
    parser.add_argument("--humaneval-tokens", type=int, default=384, help="base tokens per HumanEval answer")
    parser.add_argument("--humaneval-batch", type=int, default=16, help="HumanEval prompts generated together")


def run(args: Any) -> int:
    """Entry point of ``zip2zip eval``."""
    from zip2zip.modeling import Zip2ZipForCausalLM
    from zip2zip.tokenizer import Zip2ZipTokenizer

    if args.window < 2:
        raise ValueError(f"--window must be at least 2, got {args.window}")
    problems = None
    if args.humaneval is not None:
        from zip2zip.humaneval import load_problems

        if args.humaneval < 0 or args.humaneval_tokens < 1 or args.humaneval_batch < 1:
            raise ValueError("--humaneval N must be at least 0, --humaneval-tokens and --humaneval-batch at least 1")
        problems = load_problems(args.humaneval_data, limit=args.humaneval or None)  # before any model loads
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise FileNotFoundError(f"{option}: no folder {Path(path).resolve().parent} to write {path} in")
    tokenizer = Zip2ZipTokenizer.from_pretrained(args.model)
    kwargs = {"dtype": torch.bfloat16} if args.bf16 else {}
    model: Any = Zip2ZipForCausalLM.from_pretrained(args.model, **kwargs)
    model.eval()
    if torch.cuda.is_available():
        model = model.cuda()
    report = evaluate(model, tokenizer, args.data, window=args.window, max_windows=args.max_windows,
                      prompts=PROMPTS if args.prompts == "builtin" else None, max_new_codes=args.max_new_codes)
    print(format_report(report))
    if args.answers:
        from tqdm.auto import tqdm

        from zip2zip.answers import CODE_TASKS, FACT_QUESTIONS, check_answers, format_answers

        with tqdm(total=len(CODE_TASKS) + len(FACT_QUESTIONS), desc="checked answers") as bar:
            report["answers"] = check_answers(model, tokenizer, progress=lambda _: bar.update(1))
        print()
        print(format_answers(report["answers"]))
    if problems is not None:
        from tqdm.auto import tqdm

        from zip2zip.humaneval import evaluate_humaneval, format_humaneval

        with tqdm(total=len(problems), desc="HumanEval") as bar:
            report["humaneval"] = evaluate_humaneval(model, tokenizer, problems, max_new_tokens=args.humaneval_tokens,
                                                     batch_size=args.humaneval_batch, progress=bar.update)
        print()
        print(format_humaneval(report["humaneval"]))
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=1))
    if args.plot:
        write_atomic(args.plot, plot_svg(report, f"zip2zip eval of {Path(args.model).name}"))
    return 0
