"""The benchmark corpus: plain UTF-8 text files, one folder per domain.

The development corpus lives in ``shared/corpora`` beside the repository checkout; set
``ZIP2ZIP_CORPORA`` to use another folder of the same layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CORPORA_ENV = "ZIP2ZIP_CORPORA"


@dataclass(frozen=True)
class CorpusFile:
    """One text file of the corpus."""

    domain: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def read(self) -> str:
        return self.path.read_text(encoding="utf-8")


def corpora_root() -> Path:
    """The corpus folder: ``$ZIP2ZIP_CORPORA``, else ``../shared/corpora`` from the checkout.

    Raises:
        FileNotFoundError: neither exists.
    """
    configured = os.environ.get(CORPORA_ENV)
    if configured:
        root = Path(configured)
    else:
        # python/zip2zip/corpus.py in a checkout; site-packages/zip2zip/corpus.py when installed,
        # in which case the working directory is tried as a checkout.
        candidates = [Path(__file__).resolve().parents[3] / "shared" / "corpora", Path.cwd().parent / "shared" / "corpora"]
        root = next((c for c in candidates if c.is_dir()), candidates[-1])
    if not root.is_dir():
        raise FileNotFoundError(f"no corpus folder at {root}; set {CORPORA_ENV} to the folder of domain subfolders")
    return root


def corpus_files(root: Path | None = None) -> list[CorpusFile]:
    """Every ``*.txt`` file under the corpus root, as (domain, path), sorted."""
    root = corpora_root() if root is None else root
    files = [CorpusFile(path.parent.name, path) for path in sorted(root.glob("*/*.txt"))]
    if not files:
        raise FileNotFoundError(f"no */*.txt files under {root}")
    return files
