"""See what zip2zip does to a text: per-code pieces, terminal and HTML renderings, statistics.

Each code's *piece* is the text it contributes. With byte-level BPE one code may hold only part
of a UTF-8 character, so pieces come from the streaming detokenizer (`Zip2ZipTokenizer.stream`),
which emits a character with the code that completes it: such a code's piece is empty and the
next one holds the whole character. The pieces always join to exactly
``tokenizer.decode(codes, state=state)`` (see :func:`code_pieces`).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from zip2zip._core import CodecState
from zip2zip.codec import encode_ids_batch
from zip2zip.errors import UsageError

if TYPE_CHECKING:
    from zip2zip.tokenizer import Codes, Zip2ZipTokenizer

# Pastel 256-colour backgrounds (black text on them), cycled over consecutive hypertokens.
_BACKGROUNDS = ("48;5;153", "48;5;193", "48;5;223", "48;5;189", "48;5;230", "48;5;159")
_RESET = "\x1b[0m"
# How whitespace-only hypertokens are shown; a newline keeps its line break after the mark.
_VISIBLE = {"\n": "↵\n", "\r": "␍", "\t": "→", " ": "·"}


def code_pieces(tokenizer: Zip2ZipTokenizer, codes: Codes, state: CodecState | None = None) -> list[tuple[str, bool]]:
    """The text piece of each code and whether the code is a hypertoken.

    Pieces come from the streaming detokenizer, so a code holding an incomplete UTF-8 character
    has an empty piece and the code completing it carries the character. If the streamed text
    differs from ``tokenizer.decode`` (a base tokenizer that post-processes its decode, e.g.
    ``clean_up_tokenization_spaces``), each code's piece is instead cut from the full decode at
    the longest common prefix with the decode of the codes up to it (quadratic, rare). Either
    way ``"".join(piece for piece, _ in code_pieces(...)) == tokenizer.decode(codes, state=state)``.

    Args:
        tokenizer: the hypertokenizer the codes come from.
        codes: codes of one sequence.
        state: the codebook state at the start of ``codes`` (None: empty; not modified).

    Raises:
        InvalidCodeError: a code the state cannot read.
    """
    sequence = [int(c) for c in codes]
    stream = tokenizer.stream(state)
    pieces = [stream.step([code]) for code in sequence]
    if pieces:
        pieces[-1] += stream.flush()
    full = tokenizer.decode(sequence, state=state)
    if "".join(pieces) != full:
        pieces, start = [], 0
        for end in range(1, len(sequence) + 1):
            prefix = tokenizer.decode(sequence[:end], state=state) if end < len(sequence) else full
            cut = max(start, len(os.path.commonprefix([prefix, full])))
            pieces.append(full[start:cut])
            start = cut
    vocab_size = tokenizer.vocab_size
    return [(piece, code >= vocab_size) for piece, code in zip(pieces, sequence)]


def _visible(piece: str) -> str:
    """Whitespace-only pieces with their whitespace made visible (newlines kept)."""
    if piece and piece.isspace():
        return "".join(_VISIBLE.get(char, char) for char in piece)
    return piece


def render_terminal(
    tokenizer: Zip2ZipTokenizer, codes: Codes, state: CodecState | None = None, *, colour: bool = True
) -> str:
    """The text of ``codes`` with every hypertoken highlighted, for a terminal.

    With ``colour`` each hypertoken gets a background colour (cycling over a few, so that
    neighbours differ; the colour is closed before each line break); without, it is wrapped in
    ``⟦...⟧``. Base tokens are plain. Whitespace-only hypertokens are made visible: ``·`` for
    a space, ``→`` for a tab, ``↵`` before a kept line break.

    Raises:
        InvalidCodeError: a code the state cannot read.
    """
    out: list[str] = []
    hyper_index = 0
    for piece, is_hyper in code_pieces(tokenizer, codes, state):
        if not is_hyper:
            out.append(piece)
            continue
        shown = _visible(piece)
        if colour:
            start = f"\x1b[{_BACKGROUNDS[hyper_index % len(_BACKGROUNDS)]};30m"
            out.append("\n".join(f"{start}{line}{_RESET}" if line else "" for line in shown.split("\n")))
        else:
            out.append(f"⟦{shown}⟧")
        hyper_index += 1
    return "".join(out)


def render_html(
    tokenizer: Zip2ZipTokenizer, codes: Codes, state: CodecState | None = None, *, title: str = "zip2zip"
) -> str:
    """A self-contained HTML page showing the text of ``codes`` with its hypertokens.

    Each hypertoken is one ``<span class="h cN">`` whose ``title`` gives its id and base tokens;
    line breaks inside a hypertoken get a ``↵`` mark drawn by CSS (not part of the text, so
    copying the page gives the exact text). A legend counts base tokens, codes, hypertokens
    and the reduction.

    Raises:
        InvalidCodeError: a code the state cannot read.
    """
    sequence = [int(c) for c in codes]
    pieces = code_pieces(tokenizer, sequence, state)
    after = tokenizer.state_after(sequence, state)  # knows the phrase of every code in sequence
    base_tokens = len(tokenizer.expand(sequence, state))
    body: list[str] = []
    hyper_count = 0
    for code, (piece, is_hyper) in zip(sequence, pieces):
        text = html.escape(piece, quote=False)
        if not is_hyper:
            body.append(text)
            continue
        ids = [int(i) for i in after.phrase(code)]
        tokens = tokenizer.base.convert_ids_to_tokens(ids)
        tip = f"hypertoken {code} = " + " + ".join(f"{i} {token!r}" for i, token in zip(ids, tokens))
        marked = text.replace("\n", '<i class="nl"></i>\n')
        body.append(f'<span class="h c{hyper_count % 4}" title="{html.escape(tip)}">{marked}</span>')
        hyper_count += 1
    reduction = 1 - len(sequence) / base_tokens if base_tokens else 0.0
    legend = (
        f"{base_tokens:,} base tokens &rarr; {len(sequence):,} codes ({hyper_count:,} hypertokens), "
        f"{reduction:.1%} fewer. Highlighted: hypertokens (hover for their base tokens)."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
.legend {{ color: #444; margin-bottom: 1em; }}
.text {{ font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.5; }}
.h {{ border-radius: 3px; }}
.c0 {{ background: #cfe8ff; }} .c1 {{ background: #d8f5c8; }}
.c2 {{ background: #ffe2c6; }} .c3 {{ background: #e6dcff; }}
.nl::before {{ content: "\\21B5"; opacity: 0.5; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="legend">{legend}</p>
<div class="text">{"".join(body)}</div>
</body></html>
"""


@dataclass(frozen=True)
class TextStats:
    """Compression of one text (or a sum of texts).

    Attributes:
        bytes: UTF-8 bytes of the text.
        base_tokens: ids from the base tokenizer.
        codes: LZW codes (base ids and hypertokens) for those ids.
    """

    bytes: int
    base_tokens: int
    codes: int

    @property
    def reduction(self) -> float:
        """1 - codes / base_tokens (0.0 for no tokens)."""
        return 1 - self.codes / self.base_tokens if self.base_tokens else 0.0

    @property
    def bytes_per_token(self) -> float:
        """Bytes per base token (0.0 for no tokens)."""
        return self.bytes / self.base_tokens if self.base_tokens else 0.0

    @property
    def bytes_per_code(self) -> float:
        """Bytes per code (0.0 for no codes)."""
        return self.bytes / self.codes if self.codes else 0.0

    def __add__(self, other: TextStats) -> TextStats:
        return TextStats(self.bytes + other.bytes, self.base_tokens + other.base_tokens, self.codes + other.codes)

    def as_dict(self) -> dict[str, Any]:
        """The counts and the derived ratios, for JSON/CSV."""
        return {
            "bytes": self.bytes,
            "base_tokens": self.base_tokens,
            "codes": self.codes,
            "reduction": self.reduction,
            "bytes_per_token": self.bytes_per_token,
            "bytes_per_code": self.bytes_per_code,
        }


def compression_stats(
    tokenizer: Zip2ZipTokenizer,
    texts: Sequence[str],
    *,
    window: int | None = None,
    add_special_tokens: bool = False,
) -> list[TextStats]:
    """How much each text compresses, through the parallel batch encoder.

    Args:
        tokenizer: the hypertokenizer (its K and S apply).
        texts: the texts.
        window: cut each text's base ids into windows of this many ids, each compressed from an
            empty codebook (the last may be shorter); None: one codebook per text.
        add_special_tokens: count the base tokenizer's special tokens (e.g. BOS) too.

    Raises:
        UsageError: ``window`` is not positive.
    """
    if window is not None and window < 1:
        raise UsageError(f"window must be at least 1, got {window}")
    results = tokenizer._hyper.encode_batch(list(texts), add_special_tokens)
    stats = []
    for text, (ids, (codes, _installed, _codebook, _lengths)) in zip(texts, results):
        n_codes = len(codes)
        if window is not None and len(ids) > window:
            windows = [np.ascontiguousarray(ids[start : start + window]) for start in range(0, len(ids), window)]
            n_codes = sum(len(encoding) for encoding in encode_ids_batch(tokenizer.config, windows))
        stats.append(TextStats(len(text.encode("utf-8")), len(ids), n_codes))
    return stats
