"""Tokenizer throughput: text to codes with zip2zip against `tokenizers` alone and against the
reference pipeline (base tokenizer, then `zip2zip-compression`), in one run, on the same texts.

The corpus files are cut at line ends into pieces of about 8 KB (about 2,000 tokens: a long
prompt each), and every piece is encoded from an empty codebook. All pipelines run batched over
all pieces with all cores; rates are MB of UTF-8 text per second, best of --repeat runs.

    python benchmarks/tokenizer_throughput.py [--piece-bytes 8192] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import zip2zip_compression as reference

import zip2zip as z
from _timing import best_time  # benchmarks/ is on sys.path when a script runs
from zip2zip.corpus import corpus_files
from zip2zip.sources import load_smollm2_tokenizer


def pieces_of(text: str, size: int) -> list[str]:
    pieces, current, length = [], [], 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        length += len(line.encode())
        if length >= size:
            pieces.append("".join(current))
            current, length = [], 0
    if current:
        pieces.append("".join(current))
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--piece-bytes", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    base = load_smollm2_tokenizer()
    tok = z.Zip2ZipTokenizer.from_base(base)
    backend = base.backend_tokenizer
    texts = [piece for f in corpus_files() for piece in pieces_of(f.read(), args.piece_bytes)]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    config = tok.config
    pad = base.pad_token_id
    compressor = reference.LZWCompressor(
        config.vocab_size, config.max_codebook_size, config.max_subtokens, pad, list(config.disabled_ids)
    )

    # Same codes from every pipeline before timing.
    ours = [codes.tolist() for _ids, (codes, *_rest) in tok._hyper.encode_batch(texts, False)]
    ids = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    ref_codes = compressor.batch_encode(ids, False, False, None)[0]
    assert ours == [list(c) for c in ref_codes], "codes differ from the reference pipeline"
    n_tokens = sum(map(len, ids))
    n_codes = sum(map(len, ours))

    def reference_pipeline() -> None:
        batch = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
        compressor.batch_encode(batch, False, False, None)

    rows = [
        ("tokenizers encode_batch (ids only, baseline)", lambda: backend.encode_batch(texts, add_special_tokens=False)),
        (
            "tokenizers encode_batch_fast (no offsets)",
            lambda: backend.encode_batch_fast(texts, add_special_tokens=False),
        ),
        ("zip2zip HyperTokenizer.encode_batch (text to codes)", lambda: tok._hyper.encode_batch(texts, False)),
        ("zip2zip Zip2ZipTokenizer(texts) (lists, HF-style)", lambda: tok(texts, add_special_tokens=False)),
        ("reference: encode_batch + zip2zip-compression", reference_pipeline),
    ]
    print(
        f"# {time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} cores | SmolLM2 tokenizer, K=2048 S=4"
    )
    print(
        f"# {len(texts)} pieces, {megabytes:.2f} MB, {n_tokens:,} tokens -> {n_codes:,} codes "
        f"({1 - n_codes / n_tokens:.1%} fewer); codes identical to the reference pipeline"
    )
    print(f"| {'pipeline':<52} | {'MB/s':>6} | {'vs tokenizers':>13} |")
    print(f"|{'-' * 54}|{'-' * 7}:|{'-' * 14}:|")
    baseline = None
    for name, fn in rows:
        rate = megabytes / best_time(fn, args.repeat)
        baseline = baseline or rate
        print(f"| {name:<52} | {rate:>6.2f} | {rate / baseline:>12.2f}x |")


if __name__ == "__main__":
    main()
