"""Are the answers still right? Checked answers for ``zip2zip eval --answers``.

A zip2zip model should answer as its base model does. Reading answers side by side does not
scale and is a matter of judgement, so this module asks questions whose answers a program can
check, of both models, greedily:

* code tasks: each prompt names the Python function to write; the first fenced code block of the
  answer that defines it runs in a separate interpreter (``python -I``, no stdin, a time limit)
  followed by the task's asserts. It passes when that process exits with status 0.
* fact questions: the answer passes when it contains one of the expected words (case-folded).

None of these prompts is among `scripts/distill.py`'s self-distillation prompts or the
benchmark's (`zip2zip.evaluation.prompts.BENCH_PROMPTS`). Running generated code is what code benchmarks do;
it is the code of the model being evaluated, run with the evaluating user's rights.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zip2zip.evaluation.prompts import user_turn
from zip2zip.modeling.lora import base_only


@dataclass(frozen=True)
class CodeTask:
    """A prompt that names ``function``, and asserts its definition must pass."""

    prompt: str
    function: str
    tests: str


@dataclass(frozen=True)
class FactQuestion:
    """A question and the words, one of which a right answer contains."""

    prompt: str
    expected: tuple[str, ...]


def _task(function: str, what: str, tests: str) -> CodeTask:
    return CodeTask(f"Write a Python function `{function}` that {what}.", function.split("(")[0], tests)


CODE_TASKS: list[CodeTask] = [
    _task(
        "digit_sum(n)",
        "returns the sum of the decimal digits of a non-negative integer n",
        "assert digit_sum(0) == 0\nassert digit_sum(12345) == 15\nassert digit_sum(9) == 9",
    ),
    _task(
        "is_leap_year(year)",
        "returns True if the year is a leap year in the Gregorian calendar, else False",
        "assert is_leap_year(2000) and is_leap_year(2024)\nassert not is_leap_year(1900) and not is_leap_year(2023)",
    ),
    _task(
        "count_uppercase(text)",
        "returns how many uppercase letters the string text contains",
        "assert count_uppercase('Hello World') == 2\nassert count_uppercase('') == 0\nassert count_uppercase('ABc') == 2",
    ),
    _task(
        "second_largest(numbers)",
        "returns the second largest distinct value of a list of numbers",
        "assert second_largest([1, 3, 2]) == 2\nassert second_largest([5, 5, 4]) == 4",
    ),
    _task(
        "sum_of_squares(n)",
        "returns 1*1 + 2*2 + ... + n*n",
        "assert sum_of_squares(3) == 14\nassert sum_of_squares(1) == 1\nassert sum_of_squares(0) == 0",
    ),
    _task(
        "is_sorted(items)",
        "returns True if the list items is sorted in non-decreasing order",
        "assert is_sorted([1, 2, 2, 3]) and is_sorted([])\nassert not is_sorted([3, 1])",
    ),
    _task(
        "count_even(numbers)",
        "returns how many even numbers the list numbers contains",
        "assert count_even([1, 2, 3, 4]) == 2\nassert count_even([]) == 0\nassert count_even([7]) == 0",
    ),
    _task(
        "capitalize_words(sentence)",
        "returns the sentence with the first letter of every word in uppercase",
        "assert capitalize_words('hello big world') == 'Hello Big World'",
    ),
    _task(
        "average(numbers)",
        "returns the arithmetic mean of a non-empty list of numbers",
        "assert average([1, 2, 3, 4]) == 2.5\nassert average([5]) == 5",
    ),
    _task(
        "reverse_words(sentence)",
        "returns the words of the sentence in reverse order, separated by single spaces",
        "assert reverse_words('one two three') == 'three two one'",
    ),
    _task(
        "square_list(numbers)",
        "returns a new list with the square of each number",
        "assert square_list([1, 2, 3]) == [1, 4, 9]\nassert square_list([]) == []",
    ),
    _task(
        "max_of_three(a, b, c)",
        "returns the largest of three numbers",
        "assert max_of_three(1, 5, 3) == 5\nassert max_of_three(7, 2, 7) == 7\nassert max_of_three(-1, -5, -3) == -1",
    ),
    _task(
        "is_even(n)",
        "returns True if the integer n is even, else False",
        "assert is_even(4) and is_even(0)\nassert not is_even(7)",
    ),
    _task(
        "char_frequency(text)",
        "returns a dictionary mapping each character of text to how often it occurs",
        "assert char_frequency('aab') == {'a': 2, 'b': 1}\nassert char_frequency('') == {}",
    ),
    _task(
        "product(numbers)",
        "returns the product of all numbers in a list, and 1 for an empty list",
        "assert product([2, 3, 4]) == 24\nassert product([]) == 1",
    ),
    _task(
        "starts_with_vowel(word)",
        "returns True if the word starts with a vowel, in either case",
        "assert starts_with_vowel('apple') and starts_with_vowel('Orange')\nassert not starts_with_vowel('banana')",
    ),
]

FACT_QUESTIONS: list[FactQuestion] = [
    FactQuestion("What is the capital of Italy?", ("rome",)),
    FactQuestion("What is the capital of Japan?", ("tokyo",)),
    FactQuestion("Which planet is known as the Red Planet?", ("mars",)),
    FactQuestion("What is the largest planet in our solar system?", ("jupiter",)),
    FactQuestion("Who wrote the play Romeo and Juliet?", ("shakespeare",)),
    FactQuestion("What is the largest ocean on Earth?", ("pacific",)),
    FactQuestion("How many legs does a spider have?", ("eight", "8")),
    FactQuestion("What is the chemical formula of water?", ("h2o", "h₂o")),
    FactQuestion("Which gas do plants take in from the air to make their food?", ("carbon dioxide", "co2", "co₂")),
    FactQuestion("How many days does a leap year have?", ("366",)),
    FactQuestion("At what temperature in degrees Celsius does water boil at sea level?", ("100",)),
    FactQuestion("Which language is mainly spoken in Brazil?", ("portuguese",)),
    FactQuestion("What is 12 multiplied by 12?", ("144",)),
    FactQuestion("Who painted the Mona Lisa?", ("leonardo", "da vinci")),
    FactQuestion("How many continents are there on Earth?", ("seven", "7")),
    FactQuestion("What is the freezing point of water in degrees Fahrenheit?", ("32",)),
]

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_function(answer: str, function: str) -> str | None:
    """The first fenced code block of ``answer`` that defines ``function`` (an unclosed block
    at the end counts: answers stop at a length limit), or ``None``."""
    for block in _FENCE.findall(answer):
        if re.search(rf"^\s*def\s+{re.escape(function)}\s*\(", block, re.MULTILINE):
            return str(block)
    return None


def run_code_check(answer: str, task: CodeTask, timeout: float = 10.0) -> bool:
    """Whether the answer's definition of ``task.function`` passes ``task.tests``, run in a
    separate isolated interpreter with no stdin and a time limit."""
    code = extract_function(answer, task.function)
    if code is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "check.py")
        with open(script, "w", encoding="utf-8") as file:
            file.write(code + "\n\n" + task.tests + "\n")
        try:
            result = subprocess.run(
                [sys.executable, "-I", script],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return False
    return result.returncode == 0


def fact_check(answer: str, question: FactQuestion) -> bool:
    """Whether the answer names one of the expected words."""
    folded = answer.casefold()
    return any(word in folded for word in question.expected)


def zip2zip_answer(model: Any, tokenizer: Any, prompt: str, max_new_codes: int, **options: Any) -> str:
    """The zip2zip model's greedy answer, decoded; ``options`` go to ``generate()`` (for instance
    ``output_hypertokens=False, marginal_first_token=True``)."""
    chat = user_turn(tokenizer, prompt, return_tensors="pt", return_dict=True)
    batch = {k: v.to(next(model.parameters()).device) for k, v in chat.items()}
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_codes, do_sample=False, **options)
    prompt_codes = batch["input_ids"][0].tolist()
    text: str = tokenizer.decode(
        out[0, len(prompt_codes) :].tolist(), state=tokenizer.state_after(prompt_codes), skip_special_tokens=True
    )
    return text


def base_answer(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """The base model's (adapter disabled) greedy answer, with the base tokenizer."""
    base_tokenizer = tokenizer.base
    chat = user_turn(base_tokenizer, prompt, return_tensors="pt", return_dict=True)
    batch = {k: v.to(next(model.parameters()).device) for k, v in chat.items()}
    eos = model.generation_config.eos_token_id
    with torch.no_grad(), base_only(model) as plain:
        out = plain.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos if isinstance(eos, int) else None,
        )
    text: str = base_tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return text


def check_answers(
    model: Any,
    tokenizer: Any,
    *,
    code_tasks: Sequence[CodeTask] = CODE_TASKS,
    questions: Sequence[FactQuestion] = FACT_QUESTIONS,
    max_new_codes: int = 200,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both models' greedy answers to the code tasks and fact questions, and which pass; the
    zip2zip model also answers as the safety valve writing the marginal's most likely token
    (``output_hypertokens=False, marginal_first_token=True``: ``valve_marginal``).

    The base model gets ``max_new_codes`` base tokens, the zip2zip model as many codes (at least
    as much text). Fact answers get a quarter of that. Returns per set the pass counts and each
    answer with its verdicts.
    """
    report: dict[str, Any] = {}
    sets: list[tuple[str, Sequence[Any], Callable[[str, Any], bool], int]] = [
        ("code", code_tasks, run_code_check, max_new_codes),
        ("facts", questions, fact_check, max(max_new_codes // 4, 16)),
    ]
    for name, items, check, budget in sets:
        rows = []
        for item in items:
            if progress is not None:
                progress(f"{name}: {item.prompt}")
            base = base_answer(model, tokenizer, item.prompt, budget)
            zipped = zip2zip_answer(model, tokenizer, item.prompt, budget)
            valved = zip2zip_answer(
                model, tokenizer, item.prompt, budget, output_hypertokens=False, marginal_first_token=True
            )
            rows.append(
                {
                    "prompt": item.prompt,
                    "base": base,
                    "zip2zip": zipped,
                    "valve_marginal": valved,
                    "base_passes": check(base, item),
                    "zip2zip_passes": check(zipped, item),
                    "valve_marginal_passes": check(valved, item),
                }
            )
        report[name] = {
            "questions": len(rows),
            "base_passed": sum(r["base_passes"] for r in rows),
            "zip2zip_passed": sum(r["zip2zip_passes"] for r in rows),
            "valve_marginal_passed": sum(r["valve_marginal_passes"] for r in rows),
            "answers": rows,
        }
    return report


def format_answers(report: dict[str, Any]) -> str:
    """A Markdown table: per set, how many answers of each model pass, and on how many prompts
    only one of the base and the zip2zip model is right. (Reports written before the valve's
    column have no ``valve_marginal_passed``: "-".)"""
    lines = [
        "| checked answers | questions | base right | zip2zip right | only base right | only zip2zip right "
        "| valve with the marginal's token right |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report.items():
        only_base = sum(a["base_passes"] and not a["zip2zip_passes"] for a in r["answers"])
        only_zip = sum(a["zip2zip_passes"] and not a["base_passes"] for a in r["answers"])
        valve = r.get("valve_marginal_passed", "-")
        lines.append(
            f"| {name} | {r['questions']} | {r['base_passed']} | {r['zip2zip_passed']} | {only_base} | {only_zip} "
            f"| {valve} |"
        )
    return "\n".join(lines)
