"""``zip2zip stats PATH...``: how much files compress (per file, per folder, in total).

The work is done by :func:`run_stats`, which takes a ready tokenizer, so that other code (and
the tests) can call it without loading one per call.
"""

from __future__ import annotations

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
from zip2zip.errors import UsageError
from zip2zip.render import TextStats, compression_stats
from zip2zip.tokenizer import Zip2ZipTokenizer

DEFAULT_GLOBS = ("*.txt", "*.py", "*.md", "*.json", "*.jsonl")
FORMATS = ("table", "json", "csv")
# Files encoded per batch call: enough for the encoder's threads, bounded memory.
_CHUNK_FILES = 256
_CHUNK_BYTES = 64 << 20


@dataclass(frozen=True)
class StatsRow:
    """One row of ``zip2zip stats``: ``kind`` is "file", "folder" (the files of one folder) or
    "total" (every file)."""

    kind: str
    path: str
    stats: TextStats

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, **self.stats.as_dict()}


def collect_files(
    paths: Sequence[str | os.PathLike[str]], globs: Sequence[str] = DEFAULT_GLOBS
) -> list[tuple[Path, str]]:
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
        UsageError: an unknown format.
    """
    if fmt == "json":
        return json.dumps([row.as_dict() for row in rows], indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=list(StatsRow("file", "", TextStats(0, 0, 0)).as_dict()), lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)
        return buffer.getvalue()
    if fmt != "table":
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
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
    lines = [
        "| " + " | ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))) + " |"
    ]
    lines.append("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for line in table:
        lines.append(
            "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) + " |"
        )
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
