"""How much of a training batch is padding under ``--document-windows``: the shuffled order
against ``--group-by-length``, on the same windows (CPU only, no model).

    python benchmarks/batch_padding.py --tokenizer models/smollm2-135m-zip2zip DATA... [--window-codes 1024] [--batch-size 32]

A document's last window is shorter than ``--window-codes``; in a batch every window is padded
to the longest. Prints, per order, the real codes over the code slots of one epoch's batches.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from zip2zip import encode_ids
from zip2zip.tokenizer import Zip2ZipTokenizer
from zip2zip.training.loop import build_windows
from zip2zip.training.samplers import EpochOrder, GroupedBatches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="training files or folders, as zip2zip train --data")
    parser.add_argument("--tokenizer", required=True, help="a saved zip2zip model or tokenizer folder")
    parser.add_argument("--window-codes", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    tokenizer = Zip2ZipTokenizer.from_pretrained(args.tokenizer)
    windows = build_windows(tokenizer, args.data, args.window_codes, document_windows=True)
    codes = np.array(
        [
            len(encode_ids(tokenizer.config, windows.ids[int(a) : int(b)]).codes)
            for a, b in zip(windows.starts[:-1], windows.starts[1:])
        ]
    )
    batch = args.batch_size
    flat = list(EpochOrder(len(windows), 1, 0))
    orders = {
        "shuffled": [flat[i : i + batch] for i in range(0, len(flat) - batch + 1, batch)],  # drop_last, as train
        "grouped": list(GroupedBatches(np.diff(windows.starts), batch, 1, 0)),
    }
    print(json.dumps({"windows": len(windows), "full_windows": int((codes == args.window_codes).sum())}))
    for name, batches in orders.items():
        real = sum(int(codes[b].sum()) for b in batches)
        slots = sum(len(b) * int(codes[b].max()) for b in batches)
        print(
            json.dumps(
                {
                    "order": name,
                    "batches": len(batches),
                    "real_codes": real,
                    "code_slots": slots,
                    "real_fraction": round(real / slots, 4),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
