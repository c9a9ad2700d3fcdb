"""Codec throughput: zip2zip against the paper's reference package, in one run, same id streams.

The id streams are the SmolLM2-135M-Instruct token ids of every file of the corpus, cut into
windows (default 4,096 ids, each encoded from an empty codebook: one prompt or training
window). Both codecs get the same config: V=49,152, K=2,048, S=4, the same disabled ids, and
each gets its native input (NumPy int32 arrays for zip2zip, Python lists for the reference);
conversions are not timed. Codes are checked to be identical before anything is timed.

    python benchmarks/codec_throughput.py [--window 4096] [--repeat 5] [--rust]

--rust also runs the pure-Rust core (cargo example `throughput`) on the same ids, one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zip2zip_compression as reference

import zip2zip as z
from _timing import best_time  # benchmarks/ is on sys.path when a script runs
from zip2zip.corpus import corpus_files
from zip2zip.sources import default_disabled_ids, load_smollm2_tokenizer

K, S = 2048, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=4096, help="ids per sequence (default 4096)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is kept (default 5)")
    parser.add_argument("--rust", action="store_true", help="also time the Rust core alone (needs cargo)")
    args = parser.parse_args()

    tokenizer = load_smollm2_tokenizer()
    files = corpus_files()
    encodings = tokenizer.backend_tokenizer.encode_batch([f.read() for f in files], add_special_tokens=False)
    stream = np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings])
    windows = [stream[i : i + args.window] for i in range(0, len(stream), args.window)]
    lists = [w.tolist() for w in windows]
    n_ids = len(stream)

    vocab = len(tokenizer)
    disabled = default_disabled_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else disabled[0]
    config = z.CodebookConfig(vocab, K, S, disabled)
    compressor = reference.LZWCompressor(vocab, K, S, pad, disabled)

    ours_encoded = z.encode_ids_batch(config, windows)
    ref_encoded = compressor.batch_encode(lists, False, False, None)
    for ours, ref_codes in zip(ours_encoded, ref_encoded[0]):
        if ours.codes.tolist() != list(ref_codes):
            sys.exit("codes differ from the reference: not timing")
    n_codes = sum(len(e) for e in ours_encoded)
    code_arrays = [e.codes for e in ours_encoded]
    code_lists = [c.tolist() for c in code_arrays]

    rows = [
        (
            "encode",
            "one thread",
            lambda: [z.encode_ids(config, w) for w in windows],
            lambda: [compressor.encode(ids) for ids in lists],
        ),
        (
            "encode",
            "batch",
            lambda: z.encode_ids_batch(config, windows),
            lambda: compressor.batch_encode(lists, False, False, None),
        ),
        (
            "decode",
            "one thread",
            lambda: [z.decode_ids(config, c) for c in code_arrays],
            lambda: [compressor.decode(c) for c in code_lists],
        ),
        (
            "decode",
            "batch",
            lambda: z.decode_ids_batch(config, code_arrays),
            lambda: compressor.batch_decode(code_lists),
        ),
    ]
    print(
        f"# zip2zip {z.__version__} vs zip2zip-compression 0.3.4 | {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores | {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"# {len(files)} corpus files, {n_ids:,} SmolLM2 ids in {len(windows)} windows of {args.window}; "
        f"K={K} S={S}, {len(disabled)} disabled ids; {n_codes:,} codes ({n_ids / n_codes:.3f} ids per code)"
    )
    print(f"| {'op':<6} | {'mode':<10} | {'zip2zip Mtok/s':>14} | {'reference Mtok/s':>16} | {'speed-up':>8} |")
    print(f"|{'-' * 8}|{'-' * 12}|{'-' * 16}:|{'-' * 18}:|{'-' * 10}:|")
    for op, mode, ours_fn, ref_fn in rows:
        ours_rate = n_ids / best_time(ours_fn, args.repeat) / 1e6
        ref_rate = n_ids / best_time(ref_fn, args.repeat) / 1e6
        print(f"| {op:<6} | {mode:<10} | {ours_rate:>14.1f} | {ref_rate:>16.2f} | {ours_rate / ref_rate:>7.1f}x |")

    if args.rust:
        with tempfile.TemporaryDirectory() as tmp:
            ids_path = Path(tmp) / "ids.u32"
            stream.astype("<u4").tofile(ids_path)
            disabled_path = Path(tmp) / "disabled.u32"
            np.asarray(disabled, dtype="<u4").tofile(disabled_path)
            command = [
                "cargo",
                "run",
                "--release",
                "-q",
                "-p",
                "zip2zip-core",
                "--example",
                "throughput",
                "--",
                str(ids_path),
                str(vocab),
                str(args.window),
                str(disabled_path),
            ]
            print("# Rust core alone, same windows and config:")
            result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1])
            print("\n".join("#   " + line for line in result.stdout.strip().splitlines()))


if __name__ == "__main__":
    main()
