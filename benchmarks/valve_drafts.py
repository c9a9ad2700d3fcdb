"""The safety valve with its own hypertoken drafts, against the valve's plain ``generate()``.

The safety valve (``output_hypertokens=False``) keeps most of the base model's HumanEval score
and gives up generation compression. Hypertoken speculation with ``draft_source="hypertokens"``
drafts the rest of the phrase of the best hypertoken starting with the base id the valve writes
and verifies it in the next pass (`zip2zip.generation.speculative`): the same base ids in fewer
passes. This runs HumanEval's chat prompts one at a time (batch 1, greedy, ``--new-tokens``
codes, no early stop but EOS) through four loops and prints, side by side:

- the valve's plain ``generate()`` (the reference: seconds, and its codes);
- speculation with no drafts (one code a pass: the loop's own cost);
- hypertoken drafts, lookup drafts, and both: whether the codes equal the reference's, forward
  passes per code, draft codes proposed and accepted, and seconds over the reference's.

    python benchmarks/valve_drafts.py --model models/smollm2-135m-zip2zip [--problems 16]
        [--new-tokens 256] [--draft-codes 8] [--device cuda] [--dtype bfloat16] [--marginal]
        [--json out.json]

``--marginal`` runs every loop with ``marginal_first_token=True`` (the valve writes the
marginal's most likely token, the mode that solved the most HumanEval problems).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zip2zip.evaluation.humaneval import _chat_text, load_problems
from zip2zip.generation.speculative import speculative_generate

LOOPS = ("no drafts", "hypertokens", "lookup", "both")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m-zip2zip")
    parser.add_argument("--problems", type=int, default=16, help="the first N HumanEval problems")
    parser.add_argument(
        "--humaneval-data", default=None, help="HumanEval.jsonl.gz (default: found as zip2zip eval finds it)"
    )
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--draft-codes", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32")
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="every loop with marginal_first_token=True (the valve writes the marginal's token)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import zip2zip as z
    from zip2zip.modeling import Zip2ZipForCausalLM

    device = torch.device(args.device)
    tokenizer = z.Zip2ZipTokenizer.from_pretrained(args.model)
    model = Zip2ZipForCausalLM.from_pretrained(args.model).to(device, getattr(torch, args.dtype)).eval()
    problems = load_problems(args.humaneval_data, limit=args.problems)
    totals: dict[str, dict[str, float]] = {
        loop: {"seconds": 0.0, "passes": 0, "codes": 0, "proposed": 0, "accepted": 0, "same": 0} for loop in LOOPS
    }
    reference_seconds = 0.0
    rows: list[dict[str, Any]] = []
    warm = True
    for problem in problems:
        text = _chat_text(tokenizer.base, problem)
        batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        batch = {key: value.to(device) for key, value in batch.items()}
        for _ in range(2 if warm else 1):  # the first problem twice: the first run warms up
            _sync(device)
            start = time.perf_counter()
            with torch.no_grad():
                reference = model.generate(
                    **batch,
                    max_new_tokens=args.new_tokens,
                    do_sample=False,
                    output_hypertokens=False,
                    marginal_first_token=args.marginal,
                )
            _sync(device)
            seconds = time.perf_counter() - start
        reference_seconds += seconds
        row: dict[str, Any] = {"task_id": problem.task_id, "reference_seconds": seconds}
        for loop in LOOPS:
            for _ in range(2 if warm else 1):
                _sync(device)
                start = time.perf_counter()
                with torch.no_grad():
                    out = speculative_generate(
                        model,
                        batch["input_ids"],
                        batch["attention_mask"],
                        max_new_tokens=args.new_tokens,
                        num_draft_codes=0 if loop == "no drafts" else args.draft_codes,
                        output_hypertokens=False,
                        draft_source="hypertokens" if loop == "no drafts" else loop,
                        marginal_first_token=args.marginal,
                    )
                _sync(device)
                seconds = time.perf_counter() - start
            same = torch.equal(out.sequences, reference)
            stats = out.stats
            row[loop] = {"seconds": seconds, "same": same, **vars(stats)}
            total = totals[loop]
            total["seconds"] += seconds
            total["same"] += int(same)
            for key in ("passes", "codes", "proposed", "accepted"):
                total[key] += getattr(stats, key)
        warm = False
        rows.append(row)
        print(
            f"{problem.task_id}: reference {row['reference_seconds']:.2f} s; "
            + "; ".join(f"{loop} {row[loop]['seconds']:.2f} s, {row[loop]['passes']} passes" for loop in LOOPS),
            file=sys.stderr,
        )

    print(
        f"\nThe safety valve, {len(problems)} HumanEval prompts, batch 1, {args.new_tokens} new codes at most, "
        f"{args.draft_codes} draft codes, {args.device} {args.dtype}"
        + (", the marginal's first token" if args.marginal else "")
    )
    print(f"valve generate(): {reference_seconds:.2f} s\n")
    print("| loop | same codes | codes per pass | proposed | accepted | acceptance | seconds | time / generate() |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for loop in LOOPS:
        total = totals[loop]
        passes = max(total["passes"], 1)
        print(
            f"| {loop} | {int(total['same'])}/{len(problems)} | {total['codes'] / passes:.3f} | {int(total['proposed'])} | "
            f"{int(total['accepted'])} | {total['accepted'] / max(total['proposed'], 1):.3f} | {total['seconds']:.2f} | "
            f"{total['seconds'] / reference_seconds:.3f} |"
        )
    if args.json:
        report = {"args": vars(args), "reference_seconds": reference_seconds, "totals": totals, "rows": rows}
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if all(totals[loop]["same"] == len(problems) for loop in LOOPS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
