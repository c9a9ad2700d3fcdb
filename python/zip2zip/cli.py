"""The ``zip2zip`` command line: compression statistics and hypertoken renderings.

``zip2zip stats PATH...`` prints how much files compress (per file, per folder, in total);
``zip2zip show [PATH|-]`` prints a text with its hypertokens highlighted, or writes an HTML page.
Both use SmolLM2-135M-Instruct's tokenizer (offline) unless ``--tokenizer`` names another.
User errors (missing files, a bad tokenizer source, invalid K/S) print one line to stderr and
exit with status 2.

The work is done by :func:`run_stats` and :func:`run_show`, which take a ready tokenizer, so
that other code (and the tests) can call them without loading one per call.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from zip2zip import files
from zip2zip._core import CodebookConfig
from zip2zip.render import TextStats, compression_stats, render_html, render_terminal
from zip2zip.tokenizer import Zip2ZipTokenizer

DEFAULT_GLOBS = ("*.txt", "*.py", "*.md", "*.json", "*.jsonl")
FORMATS = ("table", "json", "csv")
# Files encoded per batch call: enough for the encoder's threads, bounded memory.
_CHUNK_FILES = 256
_CHUNK_BYTES = 64 << 20


class UsageError(Exception):
    """A mistake in the command's input: reported as one line, exit status 2."""


@dataclass(frozen=True)
class StatsRow:
    """One row of ``zip2zip stats``: ``kind`` is "file", "folder" (the files of one folder) or
    "total" (every file)."""

    kind: str
    path: str
    stats: TextStats

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, **self.stats.as_dict()}


# ---------------------------------------------------------------------------- tokenizer


def load_tokenizer(source: Any, max_codebook_size: int, max_subtokens: int) -> Zip2ZipTokenizer:
    """A hypertokenizer for the CLI: ``source`` is None (SmolLM2, offline) or anything
    :meth:`Zip2ZipTokenizer.from_base` accepts.

    Raises:
        UsageError: K or S is invalid, or the source does not give a fast tokenizer.
    """
    try:  # check K and S before the (slow) tokenizer load
        CodebookConfig(1, max_codebook_size, max_subtokens, [])
    except (ValueError, OverflowError) as error:
        raise UsageError(f"invalid codebook size or subtokens: {error}") from None
    if isinstance(source, str) and source.startswith((".", "/", "~")) and not os.path.exists(source):
        raise UsageError(f"tokenizer {source!r}: no such file or folder")
    try:
        if source is None:
            from zip2zip.sources import load_smollm2_tokenizer

            source = load_smollm2_tokenizer()
        return Zip2ZipTokenizer.from_base(source, max_codebook_size=max_codebook_size, max_subtokens=max_subtokens)
    except (OSError, ValueError, TypeError, ImportError, OverflowError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"cannot load tokenizer {source if isinstance(source, str) else 'SmolLM2'}: {message}") from None


# ---------------------------------------------------------------------------- stats


def collect_files(paths: Sequence[str | os.PathLike[str]], globs: Sequence[str] = DEFAULT_GLOBS) -> list[tuple[Path, str]]:
    """:func:`zip2zip.files.collect_files` with the command's default patterns; a missing path
    or an empty folder is a `UsageError`."""
    def skip(label: str) -> None:
        print(f"zip2zip: warning: skipping {label}: not a regular file", file=sys.stderr)

    try:
        return files.collect_files(paths, globs, on_skip=skip)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None


def _read_chunks(files: list[tuple[Path, str]]) -> Iterator[list[tuple[str, str]]]:
    """(label, text) of the files, in batches; non-UTF-8 files are skipped with a warning."""
    chunk: list[tuple[str, str]] = []
    size = 0
    for path, label in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            print(f"zip2zip: warning: skipping {label}: not UTF-8 text", file=sys.stderr)
            continue
        except OSError as error:
            raise UsageError(f"cannot read {label}: {error.strerror or error}") from None
        chunk.append((label, text))
        size += len(text)
        if len(chunk) >= _CHUNK_FILES or size >= _CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def stats_rows(
    tokenizer: Zip2ZipTokenizer,
    paths: Sequence[str | os.PathLike[str]],
    *,
    globs: Sequence[str] = DEFAULT_GLOBS,
    window: int | None = None,
    progress: bool = False,
) -> list[StatsRow]:
    """Compression of every file under ``paths`` (see :func:`collect_files`).

    Rows come folder by folder (a folder's files, then a "folder" row summing them when it has
    more than one), then a "total" row when there is more than one folder. Tokens are counted
    without special tokens.

    Args:
        window: cut each file's base ids into windows of this many ids, each compressed from an
            empty codebook; None: one codebook per file.
        progress: show a progress bar on stderr (when ``tqdm`` is installed).

    Raises:
        UsageError: a path is missing, nothing matches, a file is unreadable, or ``window`` < 1.
    """
    if window is not None and window < 1:
        raise UsageError(f"--window must be at least 1, got {window}")
    files = collect_files(paths, globs)
    bar: Any = None
    if progress and len(files) > 1:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=len(files), unit="file", file=sys.stderr, leave=False)
    per_file: list[tuple[str, TextStats]] = []
    try:
        for chunk in _read_chunks(files):
            measured = compression_stats(tokenizer, [text for _label, text in chunk], window=window)
            per_file.extend(zip((label for label, _text in chunk), measured))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    if not per_file:
        raise UsageError("no UTF-8 text files to measure")

    groups: dict[str, list[tuple[str, TextStats]]] = {}
    for label, stats in per_file:
        folder = label.rsplit("/", 1)[0] + "/" if "/" in label else "./"
        groups.setdefault(folder, []).append((label, stats))
    rows: list[StatsRow] = []
    for folder, members in groups.items():
        rows.extend(StatsRow("file", label, stats) for label, stats in members)
        if len(members) > 1:
            rows.append(StatsRow("folder", folder, _sum(stats for _label, stats in members)))
    if len(groups) > 1:
        rows.append(StatsRow("total", "TOTAL", _sum(stats for _label, stats in per_file)))
    return rows


def _sum(items: Any) -> TextStats:
    total = TextStats(0, 0, 0)
    for stats in items:
        total = total + stats
    return total


def format_rows(rows: Sequence[StatsRow], fmt: str = "table") -> str:
    """``rows`` as a Markdown table, a JSON list of objects, or CSV (with a header).

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "json":
        return json.dumps([row.as_dict() for row in rows], indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(StatsRow("file", "", TextStats(0, 0, 0)).as_dict()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    header = ["path", "bytes", "base tokens", "codes", "reduction", "bytes/token", "bytes/code"]
    table = [
        [
            row.path if row.kind == "file" else f"**{row.path}**",
            f"{row.stats.bytes:,}",
            f"{row.stats.base_tokens:,}",
            f"{row.stats.codes:,}",
            f"{row.stats.reduction:.1%}",
            f"{row.stats.bytes_per_token:.2f}",
            f"{row.stats.bytes_per_code:.2f}",
        ]
        for row in rows
    ]
    widths = [max(len(header[i]), *(len(line[i]) for line in table)) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for line in table:
        lines.append("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) + " |")
    return "\n".join(lines) + "\n"


def run_stats(
    tokenizer: Zip2ZipTokenizer,
    paths: Sequence[str | os.PathLike[str]],
    *,
    globs: Sequence[str] = DEFAULT_GLOBS,
    window: int | None = None,
    fmt: str = "table",
    out: TextIO | None = None,
) -> list[StatsRow]:
    """``zip2zip stats``: measure ``paths`` (see :func:`stats_rows`) and print them in ``fmt``.

    Raises:
        UsageError: as :func:`stats_rows`.
    """
    out = sys.stdout if out is None else out
    rows = stats_rows(tokenizer, paths, globs=globs, window=window, progress=sys.stderr.isatty())
    if fmt == "table":
        scope = f"windows of {window:,} ids" if window else "one codebook per file"
        config = tokenizer.config
        out.write(f"K={config.max_codebook_size}, S={config.max_subtokens}, {scope}\n\n")
    out.write(format_rows(rows, fmt))
    return rows


# ---------------------------------------------------------------------------- show


def read_text(path: str | None, text: str | None, max_chars: int | None = None) -> tuple[str, str]:
    """(text, name) from ``--text``, a file, or stdin (``path`` None or "-"), cut to
    ``max_chars`` characters: only that much is read.

    Raises:
        UsageError: both a path and ``--text``, an unreadable or non-UTF-8 file or stdin, text
            that is not valid Unicode (a lone surrogate), something that is not a regular file
            without ``--max-chars`` (it could be endless), max_chars < 1.
    """
    if max_chars is not None and max_chars < 1:
        raise UsageError(f"--max-chars must be at least 1, got {max_chars}")
    limit = -1 if max_chars is None else max_chars
    if text is not None:
        if path is not None:
            raise UsageError("give either a PATH or --text, not both")
        text, name = text[:limit] if max_chars is not None else text, "text"
    elif path is None or path == "-":
        name = "stdin"
        buffer = getattr(sys.stdin, "buffer", None)
        try:
            if buffer is None:  # a text stream put in place of stdin
                text = sys.stdin.read(limit)
            else:
                reader = io.TextIOWrapper(buffer, encoding="utf-8", errors="strict")
                try:
                    text = reader.read(limit)
                finally:
                    reader.detach()  # leave sys.stdin's buffer open
        except UnicodeDecodeError:
            raise UsageError("stdin: not UTF-8 text") from None
    else:
        name = path
        if Path(path).exists() and not Path(path).is_file() and max_chars is None:
            raise UsageError(f"{path}: not a regular file (give --max-chars N to read its first N characters)")
        try:
            with open(path, encoding="utf-8", errors="strict") as handle:
                text = handle.read(limit)
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not UTF-8 text") from None
        except OSError as error:
            raise UsageError(f"{path}: {error.strerror or error}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{name}: not valid Unicode text (a lone surrogate)") from None
    return text, name


def run_show(
    tokenizer: Zip2ZipTokenizer,
    text: str,
    *,
    colour: bool = False,
    html_path: str | os.PathLike[str] | None = None,
    title: str = "zip2zip",
    out: TextIO | None = None,
) -> list[int]:
    """``zip2zip show``: print ``text`` with its hypertokens marked (colours or ``⟦...⟧``), or
    write an HTML page to ``html_path``; a one-line summary goes to stderr. Returns the codes.

    Raises:
        UsageError: the HTML file cannot be written.
    """
    out = sys.stdout if out is None else out
    codes = tokenizer.encode(text, add_special_tokens=False)
    if html_path is not None:
        try:
            files.write_atomic(html_path, render_html(tokenizer, codes, title=title))
        except files.SaveError as error:
            raise UsageError(str(error)) from None
    else:
        rendered = render_terminal(tokenizer, codes, colour=colour)
        out.write(rendered if rendered.endswith("\n") else rendered + "\n")
    base_tokens = len(tokenizer.expand(codes))
    hyper = sum(1 for c in codes if c >= tokenizer.vocab_size)
    reduction = 1 - len(codes) / base_tokens if base_tokens else 0.0
    where = f", wrote {html_path}" if html_path is not None else ""
    print(f"{base_tokens:,} base tokens -> {len(codes):,} codes ({hyper:,} hypertokens), {reduction:.1%} fewer{where}",
          file=sys.stderr)
    return codes


# ---------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zip2zip", description="zip2zip hypertokens: compression statistics and renderings.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--tokenizer", metavar="SRC",
                         help="hub id, folder, tokenizer.json or GGUF (default: SmolLM2-135M-Instruct, offline)")
        sub.add_argument("-K", "--max-codebook-size", type=int, default=2048, metavar="K", help="hypertokens per codebook")
        sub.add_argument("-S", "--max-subtokens", type=int, default=4, metavar="S", help="longest phrase in base tokens")

    stats = commands.add_parser("stats", help="how much files compress", description="Compression of files and folders.")
    stats.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    common(stats)
    stats.add_argument("--window", type=int, metavar="N", help="compress windows of N base ids, each from an empty codebook")
    stats.add_argument("--glob", action="append", metavar="PATTERN",
                       help=f"file-name pattern for folders, repeatable (default: {' '.join(DEFAULT_GLOBS)})")
    stats.add_argument("--format", choices=FORMATS, default="table")

    show = commands.add_parser("show", help="highlight the hypertokens of a text", description="Show a text's hypertokens.")
    show.add_argument("path", nargs="?", metavar="PATH", help="a UTF-8 file, or - for stdin (default: stdin)")
    show.add_argument("--text", help="the text itself")
    common(show)
    show.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML page instead")
    show.add_argument("--max-chars", type=int, metavar="N", help="only the first N characters")
    show.add_argument("--colour", "--color", choices=("auto", "always", "never"), default="auto",
                      help="colour hypertokens (auto: when stdout is a terminal)")

    from zip2zip import bench, evaluate, train

    train_parser = commands.add_parser("train", help="LoRA-uptrain a base model into a zip2zip model",
                                       description="LoRA uptraining (runs under accelerate launch too).")
    train.add_arguments(train_parser)
    eval_parser = commands.add_parser("eval", help="bits per byte and compression, base vs zip2zip",
                                      description="Evaluate a trained zip2zip model against its base model.")
    evaluate.add_arguments(eval_parser)
    bench_parser = commands.add_parser("bench", help="generation speed, base vs zip2zip",
                                       description="End-to-end generation speed of a zip2zip model against its base.")
    bench.add_arguments(bench_parser)
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
    if args.command in ("train", "eval", "bench"):
        from zip2zip import bench, evaluate, train

        try:
            return {"train": train.run, "eval": evaluate.run, "bench": bench.run}[args.command](args)
        except (ValueError, FileNotFoundError, FileExistsError, files.SaveError) as error:
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
        tokenizer = load_tokenizer(args.tokenizer if args.tokenizer is not None else base_tokenizer,
                                   args.max_codebook_size, args.max_subtokens)
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
