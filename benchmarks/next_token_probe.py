"""Where do a zip2zip model's loops come from? The next-token distribution of the base model and
of the zip2zip model, side by side, on the same text as it grows by a repeated piece.

    python benchmarks/next_token_probe.py MODEL_FOLDER [--prompt P] [--answer A] [--repeat R] [--counts 0 1 2 4 8 16]

For each count k the text is the chat-rendered prompt, then ``answer + repeat * k``. The base
model (adapter disabled) reads its base tokens, the zip2zip model their canonical codes; both
print the probability of continuing with the first token of ``repeat`` and their top 3. A third
column feeds the zip2zip model the base tokens themselves (no hypertoken in its input, its
output still over base tokens and entries): what its adapter does without the encoders' rows. The
default is the leap-year answer where the trained models write ``year % 1000000...``: digits are
never in a hypertoken (the codebook disables them), so such a loop is the base-token choice of
the zip2zip model, not its hypertokens. Runs on the CPU in a minute.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.modeling.lora import base_only
from zip2zip.tokenizer import Zip2ZipTokenizer

PROMPT = (
    "Write a Python function `is_leap_year(year)` that returns True if the year is a leap year in the Gregorian "
    "calendar, else False."
)
ANSWER = "```python\ndef is_leap_year(year):\n    return year % 1"


def _top(probabilities: torch.Tensor, name: Any) -> str:
    values, indices = probabilities.topk(3)
    return ", ".join(f"{name(int(i))!r} {float(v):.3f}" for v, i in zip(values, indices))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--answer", default=ANSWER)
    parser.add_argument("--repeat", default="0")
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    args = parser.parse_args()
    tokenizer = Zip2ZipTokenizer.from_pretrained(args.model)
    model = Zip2ZipForCausalLM.from_pretrained(args.model).eval()
    base = tokenizer.base
    rendered = base.apply_chat_template(
        [{"role": "user", "content": args.prompt}], add_generation_prompt=True, tokenize=False
    )
    wanted = base.backend_tokenizer.encode(args.repeat, add_special_tokens=False).ids[0]
    print(
        f"| k | base P({args.repeat!r}) | zip2zip P({args.repeat!r}) | zip2zip on base tokens P({args.repeat!r}) | "
        "base top 3 | zip2zip top 3 |"
    )
    print("|---:|---:|---:|---:|---|---|")
    for count in args.counts:
        ids = base.backend_tokenizer.encode(rendered + args.answer + args.repeat * count, add_special_tokens=False).ids
        with torch.no_grad(), base_only(model) as plain:
            p_base = torch.softmax(plain(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
        encoding = tokenizer.encode_ids(ids)
        batch = {
            key: torch.from_numpy(getattr(encoding, key).astype("int64"))[None]
            for key in ("installed", "codebook", "codebook_lengths")
        }
        batch["input_ids"] = torch.from_numpy(encoding.codes.astype("int64"))[None]
        with torch.no_grad():
            p_zip = torch.softmax(model(**batch).logits[0, -1].float(), -1)
        with torch.no_grad():  # the same model reading the text as base tokens only (no hypertokens in)
            p_plain = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
        state = tokenizer.state_after(encoding.codes)

        def code_name(code: int) -> Any:
            return tokenizer.convert_ids_to_tokens(code, state) if code >= tokenizer.vocab_size else base.decode([code])

        print(
            f"| {count} | {float(p_base[wanted]):.3f} | {float(p_zip[wanted]):.3f} | {float(p_plain[wanted]):.3f} | "
            f"{_top(p_base, lambda i: base.decode([i]))} | {_top(p_zip, code_name)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
