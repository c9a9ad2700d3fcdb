"""Answers of a zip2zip model at several decoding settings between hypertoken output and the valve.

    python benchmarks/min_share.py --model models/smollm2-135m-zip2zip --settings full 0.0 0.5 0.8 valve \
        --answers --json answers.json
    python benchmarks/min_share.py --model models/smollm2-135m-zip2zip --settings 0.5 full \
        --humaneval HumanEval.jsonl.gz --json humaneval.json

A setting is ``full`` (hypertoken output, plain greedy), ``valve`` (``output_hypertokens=False``
writing the marginal's most likely token, the valve's default unless a model's config says
otherwise), ``valve-plain`` (the valve writing the most likely base id) or a share s in [0, 1]
(``generate(hypertoken_min_share=s)``: with the marginal's first token, a hypertoken is written
only when it holds at least the share s of that token's probability; s = 0 is
``marginal_first_token=True``). A setting with ``+ci`` (``full+ci``, ``valve+ci``, ``0.5+ci``)
generates with ``canonical_inputs=True``: the model reads the canonical encoding of its text at
every step (`zip2zip.generation.canonical_inputs`); with ``+bi`` it reads every written code
back as its base ids instead (``read_output_as="base_ids"``: the answer read as the valve reads
its own). ``--answers`` asks the checked code tasks and fact questions of
``zip2zip eval --answers`` (200 codes for code, 50 for facts); ``--humaneval FILE`` the HumanEval
problems of FILE (384 base tokens of answer, batches of ``--batch``). For each setting it prints
the passes, the base tokens per generated code and the share of distinct 4-grams of the answers'
base tokens (lower: more repetition), and writes every answer to ``--json``. Greedy, in the
model's dtype, on CUDA when there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from zip2zip import Zip2ZipForCausalLM, Zip2ZipTokenizer
from zip2zip.evaluation.answers import CODE_TASKS, FACT_QUESTIONS, fact_check, run_code_check
from zip2zip.evaluation.humaneval import _chat_text, distinct_ngram_share, load_problems, passes, zip2zip_answers
from zip2zip.evaluation.prompts import user_turn


def setting_options(setting: str) -> dict[str, Any]:
    """The ``generate()`` keywords of a setting."""
    if setting.endswith("+ci"):
        return {**setting_options(setting[: -len("+ci")]), "canonical_inputs": True}
    if setting.endswith("+bi"):
        return {**setting_options(setting[: -len("+bi")]), "canonical_inputs": True, "read_output_as": "base_ids"}
    if setting == "full":
        return {"marginal_first_token": False}
    if setting == "valve":
        return {"output_hypertokens": False, "marginal_first_token": True}
    if setting == "valve-plain":
        return {"output_hypertokens": False, "marginal_first_token": False}
    share = float(setting)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a share must lie in [0, 1], got {setting}")
    return {"hypertoken_min_share": share, "marginal_first_token": True}


def checked_answers(model: Any, tok: Any, setting: str) -> dict[str, Any]:
    """The checked code tasks and fact questions, one prompt at a time."""
    options = setting_options(setting)
    device = next(model.parameters()).device
    result: dict[str, Any] = {"code": 0, "facts": 0, "codes": 0, "base_tokens": 0, "answers": []}
    shares = []
    for name, items, check, budget in (
        ("code", CODE_TASKS, run_code_check, 200),
        ("facts", FACT_QUESTIONS, fact_check, 50),
    ):
        for item in items:
            chat = user_turn(tok, item.prompt, return_tensors="pt", return_dict=True)
            batch = {key: value.to(device) for key, value in chat.items()}
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=budget, do_sample=False, **options)
            prompt = batch["input_ids"][0].tolist()
            new = out[0, len(prompt) :].tolist()
            text = tok.decode(new, state=tok.state_after(prompt), skip_special_tokens=True)
            ok = bool(check(text, item))  # type: ignore[operator]
            result[name] += int(ok)
            if name == "code":
                ids = tok.base(text, add_special_tokens=False)["input_ids"]
                result["codes"] += len(new)
                result["base_tokens"] += len(ids)
                shares.append(distinct_ngram_share(ids))
            result["answers"].append({"set": name, "prompt": item.prompt, "answer": text, "passes": ok})
    result["base_tokens_per_code"] = result["base_tokens"] / max(result["codes"], 1)
    result["distinct_4grams"] = sum(shares) / max(len(shares), 1)
    return result


def humaneval(model: Any, tok: Any, setting: str, problems: list[Any], batch: int) -> dict[str, Any]:
    """HumanEval pass count, as ``zip2zip eval --humaneval`` runs the zip2zip model's answers."""
    options = setting_options(setting)
    before = model.config.hypertoken_min_share
    model.config.hypertoken_min_share = options.get("hypertoken_min_share", 0.0)
    texts = [_chat_text(tok.base, problem) for problem in problems]
    rows: list[tuple[str, list[int], int]] = []
    try:
        for start in range(0, len(problems), batch):
            rows += zip2zip_answers(
                model,
                tok,
                texts[start : start + batch],
                384,
                output_hypertokens=options.get("output_hypertokens", True),
                marginal_first_token=options.get("marginal_first_token"),
                canonical_inputs=options.get("canonical_inputs", False),
                read_output_as=options.get("read_output_as"),
            )
    finally:
        model.config.hypertoken_min_share = before
    verdicts = [passes(problem, text) for problem, (text, _, _) in zip(problems, rows)]
    return {
        "passed": sum(verdicts),
        "solved": [problem.task_id for problem, ok in zip(problems, verdicts) if ok],
        "base_tokens_per_code": sum(len(ids) for _, ids, _ in rows) / max(sum(codes for _, _, codes in rows), 1),
        "distinct_4grams": sum(distinct_ngram_share(ids) for _, ids, _ in rows) / max(len(rows), 1),
        "answers": [text for text, _, _ in rows],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m-zip2zip")
    parser.add_argument("--settings", nargs="+", default=["full", "0.5", "valve"])
    parser.add_argument("--answers", action="store_true", help="the checked code tasks and fact questions")
    parser.add_argument("--humaneval", metavar="FILE", help="HumanEval problems (HumanEval.jsonl.gz)")
    parser.add_argument("--limit", type=int, help="the first N HumanEval problems only")
    parser.add_argument("--batch", type=int, default=82, help="HumanEval problems a batch")
    parser.add_argument("--json", help="write every answer here")
    args = parser.parse_args()
    if not args.answers and not args.humaneval:
        parser.error("ask for --answers, --humaneval FILE or both")
    for setting in args.settings:
        try:
            setting_options(setting)
        except ValueError as error:
            parser.error(f"--settings: {setting!r} is not full, valve or a share in [0, 1] ({error})")
    tok = Zip2ZipTokenizer.from_pretrained(args.model)
    model: Any = Zip2ZipForCausalLM.from_pretrained(args.model).eval()
    if model.has_adapter:
        model.merge_lora()
    if torch.cuda.is_available():
        model = model.cuda()
    problems = load_problems(args.humaneval, limit=args.limit) if args.humaneval else []
    report: dict[str, Any] = {"model": args.model, "device": str(next(model.parameters()).device), "settings": {}}
    for setting in args.settings:
        began = time.time()
        row: dict[str, Any] = {}
        if args.answers:
            row["answers"] = checked_answers(model, tok, setting)
        if problems:
            row["humaneval"] = humaneval(model, tok, setting, problems, args.batch)
        row["seconds"] = time.time() - began
        report["settings"][setting] = row
        parts = [f"{setting}:"]
        if "answers" in row:
            a = row["answers"]
            parts.append(
                f"code tasks {a['code']}/{len(CODE_TASKS)}, facts {a['facts']}/{len(FACT_QUESTIONS)}, "
                f"{a['base_tokens_per_code']:.3f} base tokens per code, distinct 4-grams {a['distinct_4grams']:.3f};"
            )
        if "humaneval" in row:
            h = row["humaneval"]
            parts.append(
                f"HumanEval {h['passed']}/{len(problems)}, {h['base_tokens_per_code']:.3f} base tokens per code, "
                f"distinct 4-grams {h['distinct_4grams']:.3f};"
            )
        print(" ".join(parts), f"{row['seconds']:.0f} s", flush=True)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as file:
                json.dump(report, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
