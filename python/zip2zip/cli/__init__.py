"""The ``zip2zip`` command line: compression statistics and hypertoken renderings.

``zip2zip stats PATH...`` prints how much files compress (per file, per folder, in total);
``zip2zip show [PATH|-]`` prints a text with its hypertokens highlighted, or writes an HTML page.
``zip2zip chat --model DIR`` talks to a model; ``zip2zip generate --model DIR PROMPT...`` answers
prompts (`zip2zip.cli.chat`); train, eval and bench are in their own modules.
Both use SmolLM2-135M-Instruct's tokenizer (offline) unless ``--tokenizer`` names another.
User errors (missing files, a bad tokenizer source, invalid K/S) print one line to stderr and
exit with status 2.

The work is done by :func:`run_stats` and :func:`run_show`, which take a ready tokenizer, so
that other code (and the tests) can call them without loading one per call.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from zip2zip import files
from zip2zip.cli import bench, chat, evaluate, train
from zip2zip.cli.common import load_tokenizer
from zip2zip.cli.show import read_text, run_show
from zip2zip.cli.stats import DEFAULT_GLOBS, FORMATS, run_stats
from zip2zip.errors import UsageError, Zip2ZipError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zip2zip", description="zip2zip hypertokens: compression statistics and renderings."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--tokenizer",
            metavar="SRC",
            help="hub id, folder, tokenizer.json or GGUF (default: SmolLM2-135M-Instruct, offline)",
        )
        sub.add_argument(
            "-K", "--max-codebook-size", type=int, default=2048, metavar="K", help="hypertokens per codebook"
        )
        sub.add_argument(
            "-S", "--max-subtokens", type=int, default=4, metavar="S", help="longest phrase in base tokens"
        )

    stats = commands.add_parser(
        "stats", help="how much files compress", description="Compression of files and folders."
    )
    stats.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    common(stats)
    stats.add_argument(
        "--window", type=int, metavar="N", help="compress windows of N base ids, each from an empty codebook"
    )
    stats.add_argument(
        "--glob",
        action="append",
        metavar="PATTERN",
        help=f"file-name pattern for folders, repeatable (default: {' '.join(DEFAULT_GLOBS)})",
    )
    stats.add_argument("--format", choices=FORMATS, default="table")

    show = commands.add_parser(
        "show", help="highlight the hypertokens of a text", description="Show a text's hypertokens."
    )
    show.add_argument("path", nargs="?", metavar="PATH", help="a UTF-8 file, or - for stdin (default: stdin)")
    show.add_argument("--text", help="the text itself")
    common(show)
    show.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML page instead")
    show.add_argument("--max-chars", type=int, metavar="N", help="only the first N characters")
    show.add_argument(
        "--colour",
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour hypertokens (auto: when stdout is a terminal)",
    )

    train_parser = commands.add_parser(
        "train",
        help="LoRA-uptrain a base model into a zip2zip model",
        description="LoRA uptraining (runs under accelerate launch too).",
    )
    train.add_arguments(train_parser)
    eval_parser = commands.add_parser(
        "eval",
        help="bits per byte and compression, base vs zip2zip",
        description="Evaluate a trained zip2zip model against its base model.",
    )
    evaluate.add_arguments(eval_parser)
    bench_parser = commands.add_parser(
        "bench",
        help="generation speed, base vs zip2zip",
        description="End-to-end generation speed of a zip2zip model against its base.",
    )
    bench.add_arguments(bench_parser)
    chat_parser = commands.add_parser(
        "chat", help="talk to a zip2zip model", description="An interactive chat with a zip2zip model."
    )
    chat.add_arguments(chat_parser, one_shot=False)
    generate_parser = commands.add_parser(
        "generate", help="answer prompts (for scripts)", description="One answer per prompt from a zip2zip model."
    )
    chat.add_arguments(generate_parser, one_shot=True)
    return parser


def main(argv: Sequence[str] | None = None, *, base_tokenizer: Any = None) -> int:
    """Run the ``zip2zip`` command; returns the exit status (2 for user errors).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        base_tokenizer: a tokenizer source to use when ``--tokenizer`` is not given, instead of
            loading SmolLM2 (for callers that already hold one).
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed by argparse
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command in ("train", "eval", "bench", "chat", "generate"):
        runs = {"train": train.run, "eval": evaluate.run, "bench": bench.run, "chat": chat.run_chat}
        try:
            return {**runs, "generate": chat.run_generate}[args.command](args)
        # The user's errors: zip2zip's own, and files that are missing, in the way, or cannot be
        # written. Anything else is a bug and shows as one (a traceback).
        except (Zip2ZipError, FileNotFoundError, FileExistsError, files.SaveError) as error:
            print(f"zip2zip {args.command}: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    try:
        # Check the input before the slow tokenizer load.
        if args.command == "show":
            text, name = read_text(args.path, args.text, args.max_chars)
        elif args.window is not None and args.window < 1:
            raise UsageError(f"--window must be at least 1, got {args.window}")
        tokenizer = load_tokenizer(
            args.tokenizer if args.tokenizer is not None else base_tokenizer, args.max_codebook_size, args.max_subtokens
        )
        if args.command == "stats":
            run_stats(tokenizer, args.paths, globs=args.glob or DEFAULT_GLOBS, window=args.window, fmt=args.format)
        else:
            colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
            run_show(tokenizer, text, colour=colour, html_path=args.html, title=f"zip2zip: {name}")
    except UsageError as error:
        print(f"zip2zip: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
