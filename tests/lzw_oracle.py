"""The codec contract (DESIGN.md section 2) as a short, slow, obviously-correct Python program.

The Rust codec is checked against this oracle; the oracle is checked against the reference
package (`zip2zip-compression`) in test_reference.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class OracleLZW:
    vocab_size: int
    max_codebook_size: int
    max_subtokens: int
    disabled_ids: frozenset[int] = frozenset()
    entries: list[tuple[int, ...]] = field(default_factory=list)
    table: dict[tuple[int, ...], int] = field(default_factory=dict)
    pending: tuple[int, ...] = ()

    def _code(self, phrase: tuple[int, ...]) -> int:
        return phrase[0] if len(phrase) == 1 else self.table[phrase]

    def feed(self, ids: Iterable[int]) -> list[tuple[int, int]]:
        """Feed base ids; return (code, installed-after-reading-it) pairs emitted."""
        out: list[tuple[int, int]] = []
        for t in ids:
            if t in self.disabled_ids:
                if self.pending:
                    out.append((self._code(self.pending), len(self.entries)))
                out.append((t, len(self.entries)))
                self.pending = ()
                continue
            extended = self.pending + (t,)
            if not self.pending or extended in self.table:
                self.pending = extended
            else:
                out.append((self._code(self.pending), len(self.entries)))
                if len(self.entries) < self.max_codebook_size:
                    self.table[extended] = self.vocab_size + len(self.entries)
                    self.entries.append(extended)
                self.pending = (t,)
            if len(self.pending) == self.max_subtokens:
                out.append((self._code(self.pending), len(self.entries)))
                self.pending = ()
        return out

    def finish(self) -> list[tuple[int, int]]:
        out = [(self._code(self.pending), len(self.entries))] if self.pending else []
        self.pending = ()
        return out


def oracle_encode(
    vocab_size: int, max_codebook_size: int, max_subtokens: int, disabled: Iterable[int], ids: Iterable[int]
) -> tuple[list[int], list[int], list[tuple[int, ...]]]:
    """Codes, installed counts and entry phrases of canonical encoding from empty."""
    lzw = OracleLZW(vocab_size, max_codebook_size, max_subtokens, frozenset(disabled))
    pairs = lzw.feed(ids) + lzw.finish()
    return [c for c, _ in pairs], [n for _, n in pairs], list(lzw.entries)
