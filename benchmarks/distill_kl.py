"""How far a zip2zip model's next-token choice is from its base model's, on held-out text: the
mean ``--distill`` KL (base model without its adapter, reading base tokens, against the model's
first-base-token marginal at each code) and the code loss, over document windows.

    python benchmarks/distill_kl.py MODEL_FOLDER... --data FILES... [--window-codes 256] [--top 32]

One JSON line per model. Runs on the CPU (a few minutes for 40 chats per model) or a GPU.
"""

from __future__ import annotations

import argparse
import json

import torch

from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.modeling.loss_terms import scored_targets
from zip2zip.tokenizer import Zip2ZipTokenizer
from zip2zip.training.data import CodeWindows, collate_windows, read_documents, tokenize_document_stream
from zip2zip.training.losses import DistillKL

TEACHER_KEYS = ("window_ids", "window_mask", "code_ends")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", nargs="+", required=True, help="text or JSONL files (one document per file or line)")
    parser.add_argument("--window-codes", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--top", type=int, default=32, help="the teacher's likeliest tokens kept, as --distill-top")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for folder in args.models:
        tokenizer = Zip2ZipTokenizer.from_pretrained(folder)
        model = Zip2ZipForCausalLM.from_pretrained(folder).to(device).eval()
        ids, mask, starts = tokenize_document_stream(tokenizer, read_documents(args.data))
        windows = CodeWindows(tokenizer, ids, mask, args.window_codes, document_starts=starts, teacher_ids=True)
        kl_sum = loss_sum = 0.0
        scored = 0
        with torch.no_grad():
            for begin in range(0, len(windows), args.batch_size):
                batch = collate_windows([windows[i] for i in range(begin, min(begin + args.batch_size, len(windows)))])
                batch.pop("base_tokens")
                batch = {k: v.to(device) for k, v in batch.items()}
                teacher = {k: batch.pop(k) for k in TEACHER_KEYS}
                term = DistillKL(
                    teacher["window_ids"], teacher["window_mask"], teacher["code_ends"], weight=0.0, top=args.top
                )
                out = model(**batch, loss_terms=[term], return_logits=False)
                # both means are over these
                count = int(scored_targets(batch["labels"], batch["installed"], tokenizer.vocab_size).sum())
                kl_sum += float(out.loss_terms["distill_kl"]) * count
                loss_sum += float(out.loss) * count
                scored += count
        print(
            json.dumps(
                {
                    "model": folder,
                    "windows": len(windows),
                    "scored_codes": scored,
                    "distill_kl": round(kl_sum / max(scored, 1), 4),
                    "code_loss": round(loss_sum / max(scored, 1), 4),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
