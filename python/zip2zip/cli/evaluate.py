"""``zip2zip eval``: bits per byte, compression, checked answers and HumanEval of a zip2zip model
against its own base model (`zip2zip.evaluation`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zip2zip.errors import EvaluationError
from zip2zip.files import write_atomic


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
    parser.add_argument(
        "--answers",
        action="store_true",
        help="also check both models' answers to code tasks (run against tests) and fact questions "
        "(zip2zip.evaluation.answers); runs the generated code in a separate interpreter",
    )
    parser.add_argument(
        "--humaneval",
        type=int,
        nargs="?",
        const=0,
        default=None,
        metavar="N",
        help="also run HumanEval (zip2zip.evaluation.humaneval) for both models, greedy: all 164 problems, or the "
        "first N; runs the generated code in a separate interpreter",
    )
    parser.add_argument(
        "--humaneval-data", metavar="FILE", help="HumanEval.jsonl(.gz) (default: see zip2zip.evaluation.humaneval)"
    )
    parser.add_argument("--humaneval-tokens", type=int, default=384, help="base tokens per HumanEval answer")
    parser.add_argument("--humaneval-batch", type=int, default=16, help="HumanEval prompts generated together")


def run(args: Any) -> int:
    """Entry point of ``zip2zip eval``."""
    import torch
    from tqdm.auto import tqdm

    from zip2zip.evaluation.answers import CODE_TASKS, FACT_QUESTIONS, check_answers, format_answers
    from zip2zip.evaluation.humaneval import evaluate_humaneval, format_humaneval, load_problems
    from zip2zip.evaluation.prompts import EVAL_PROMPTS
    from zip2zip.evaluation.report import format_report, plot_svg
    from zip2zip.evaluation.scoring import evaluate
    from zip2zip.modeling import Zip2ZipForCausalLM
    from zip2zip.tokenizer import Zip2ZipTokenizer

    if args.window < 2:
        raise EvaluationError(f"--window must be at least 2, got {args.window}")
    problems = None
    if args.humaneval is not None:
        if args.humaneval < 0 or args.humaneval_tokens < 1 or args.humaneval_batch < 1:
            raise EvaluationError(
                "--humaneval N must be at least 0, --humaneval-tokens and --humaneval-batch at least 1"
            )
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
    with tqdm(total=len(args.data), desc="bits per byte", unit="file") as bar:
        report = evaluate(
            model,
            tokenizer,
            args.data,
            window=args.window,
            max_windows=args.max_windows,
            prompts=EVAL_PROMPTS if args.prompts == "builtin" else None,
            max_new_codes=args.max_new_codes,
            progress=lambda: bar.update(1),
        )
    print(format_report(report))
    if args.answers:
        with tqdm(total=len(CODE_TASKS) + len(FACT_QUESTIONS), desc="checked answers") as bar:
            report["answers"] = check_answers(model, tokenizer, progress=lambda _: bar.update(1))
        print()
        print(format_answers(report["answers"]))
    if problems is not None:
        with tqdm(total=len(problems), desc="HumanEval") as bar:
            report["humaneval"] = evaluate_humaneval(
                model,
                tokenizer,
                problems,
                max_new_tokens=args.humaneval_tokens,
                batch_size=args.humaneval_batch,
                progress=bar.update,
            )
        print()
        print(format_humaneval(report["humaneval"]))
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=1))
    if args.plot:
        write_atomic(args.plot, plot_svg(report, f"zip2zip eval of {Path(args.model).name}"))
    return 0
