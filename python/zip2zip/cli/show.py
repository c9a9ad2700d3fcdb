"""``zip2zip show [PATH|-]``: a text with its hypertokens highlighted, or an HTML page of it.

The work is done by :func:`run_show`, which takes a ready tokenizer.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import TextIO

from zip2zip import files
from zip2zip.errors import UsageError
from zip2zip.render import render_html, render_terminal
from zip2zip.tokenizer import Zip2ZipTokenizer


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
    print(
        f"{base_tokens:,} base tokens -> {len(codes):,} codes ({hyper:,} hypertokens), {reduction:.1%} fewer{where}",
        file=sys.stderr,
    )
    return codes
