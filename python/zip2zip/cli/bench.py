"""``zip2zip bench generate``: end-to-end generation speed, base model against zip2zip model
(`zip2zip.generation.bench`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zip2zip.errors import UsageError
from zip2zip.files import write_atomic
from zip2zip.shapes import LLAMA_SHAPES

# The random-weight shapes of the step-latency mode.
SHAPE_NAMES = tuple(LLAMA_SHAPES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``zip2zip bench generate`` command line."""
    parser.add_argument("what", choices=["generate"], help="what to benchmark")
    parser.add_argument("--model", help="a zip2zip model folder (zip2zip train's output): throughput mode")
    parser.add_argument(
        "--shapes", nargs="+", choices=SHAPE_NAMES, help="random-weight Llama shapes: step-latency mode"
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--max-new-tokens", type=int, default=256, help="base tokens each row may generate")
    parser.add_argument("--prompts-per-set", type=int, default=16, help="prompts of each set used at batch size 1")
    parser.add_argument("--long-prompt-tokens", type=int, default=4000, help="base tokens of the long prompt (0: skip)")
    parser.add_argument("--steps", type=int, default=128, help="decoding steps timed in the shapes mode")
    parser.add_argument("--context", type=int, default=512, help="prompt base tokens in the shapes mode")
    parser.add_argument(
        "--compression",
        type=float,
        nargs="*",
        default=[],
        help="generation compressions (base tokens per code) to project the shapes' speed-up at",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    parser.add_argument(
        "--prefill-graphs",
        action="store_true",
        help="throughput mode: replay prefill from CUDA graphs captured in the warm-up pass",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="with --model: through transformers' generate(), the base model, the base with prompt lookup "
        "decoding (transformers' at batch 1, and batched in the speculation loop), the zip2zip model and the zip2zip model with hypertoken speculation, on input-grounded, "
        "code and chat prompts (zip2zip.generation.peers)",
    )
    parser.add_argument(
        "--same-text",
        action="store_true",
        help="with --model: both models produce the base model's greedy answers in the static loop (the base "
        "their tokens, zip2zip their codes), so that decoding cost is timed apart from answer differences "
        "(zip2zip.generation.same_text)",
    )
    parser.add_argument(
        "--valve",
        action="store_true",
        help="throughput mode: the zip2zip model writes base ids only (hypertokens in the prompt only; "
        "the marginal's most likely token, the valve's default)",
    )
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="throughput mode: the zip2zip model writes the codes starting with the marginal's most likely token "
        "(config.marginal_first_token)",
    )
    parser.add_argument("--draft-codes", type=int, default=8, help="--peers: draft codes per speculation pass")
    parser.add_argument(
        "--draft-phrase",
        type=int,
        help="--peers: the most base tokens one draft code may stand for (default: the codebook's S; 1: base ids)",
    )
    parser.add_argument(
        "--sets", nargs="+", choices=["grounded", "code", "chat"], help="--peers: the prompt sets (default: all)"
    )
    parser.add_argument("--lookup-tokens", type=int, default=10, help="--peers: the base's prompt_lookup_num_tokens")
    parser.add_argument(
        "--kinds",
        nargs="+",
        # peers.KIND_NAMES's keys (kept here so that parsing the command line imports no torch)
        choices=[
            "base",
            "lookup",
            "batched-lookup",
            "zip2zip",
            "speculation",
            "valve",
            "valve-drafts",
            "read-base-ids",
        ],
        help="--peers: what runs besides the base model (default: all; batched-lookup is the base's prompt "
        "lookup at any batch size, in the speculation loop; valve writes base ids only, valve-drafts adds "
        "drafts from its hypertokens and the text, read-base-ids writes hypertokens and reads each back as "
        "its base ids)",
    )
    parser.add_argument("--json", help="also write the results here")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``zip2zip bench``."""
    from zip2zip.generation.bench import bench_model, bench_shapes, format_results

    if (args.model is None) == (args.shapes is None):
        raise UsageError("give either --model DIR (throughput) or --shapes (step latency)")
    if any(b < 1 for b in args.batch_sizes) or args.max_new_tokens < 1 or args.repeats < 1 or args.steps < 1:
        raise UsageError("batch sizes, --max-new-tokens, --steps and --repeats must be at least 1")
    if args.model is not None and not Path(args.model).is_dir():
        raise FileNotFoundError(f"no such model folder: {args.model}")
    if args.peers and args.same_text:
        raise UsageError("give --peers or --same-text, not both")
    if (args.valve or args.marginal) and (args.model is None or args.peers or args.same_text):
        raise UsageError(
            "--valve and --marginal are for the throughput mode (--model DIR without --peers or --same-text)"
        )
    if args.same_text:
        if args.model is None:
            raise UsageError("--same-text needs --model DIR")
        from zip2zip.generation.same_text import bench_same_text, format_same_text

        results = bench_same_text(args)
        print(format_same_text(results))
    elif args.peers:
        if args.model is None:
            raise UsageError("--peers needs --model DIR")
        if args.draft_codes < 1 or args.lookup_tokens < 1 or (args.draft_phrase is not None and args.draft_phrase < 1):
            raise UsageError("--draft-codes, --lookup-tokens and --draft-phrase must be at least 1")
        from zip2zip.generation.peers import bench_peers, format_peers

        results = bench_peers(args)
        print(format_peers(results))
    else:
        results = bench_model(args) if args.model is not None else bench_shapes(args)
        print(format_results(results))
    if args.json:
        write_atomic(args.json, json.dumps({k: v for k, v in results.items()}, indent=1, default=str))
    return 0
