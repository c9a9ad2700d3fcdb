"""Build zip2zip's far held-out text: languages, programming languages and kinds of prose that
neither the training corpus nor the evaluation corpus (``.corpora``) contains.

    python3 scripts/build_heldout_corpus.py [OUT_DIR] [--cache DIR] [--force] [--training DIR]

``.corpora`` (``scripts/build_eval_corpus.py``) is held out from training line by line, but its
sources are of the kinds the model trains on: Python code, the same eight natural languages,
Debian documentation. This set measures how a model does on text unlike its training data
(``zip2zip eval --data .heldout/*/*.txt``). It writes, each file cut at a line boundary at or
below 250 KB (scoring reads only the first windows of a file):

* ``code/``: Perl (Debian ``perl-modules-5.36``, the ``.pm`` files), Ruby (``libruby3.1``, the
  standard library's ``.rb`` files), Tcl (``libtcl8.6``, its library's ``.tcl`` files), JavaScript
  (``libjs-jquery``, ``jquery.js``) and C (``linux-libc-dev``, the ``linux/*.h`` headers);
* ``math/``: the GAP library (``gap-libs``, ``lib/*.gd`` and ``*.gi``: computer algebra code);
* ``multilingual/``: translated manual pages in Dutch, Vietnamese, Swedish, Czech, Greek and
  Ukrainian (``manpages-{nl,vi,sv,cs,el,uk}``; troff turned into plain text as the training
  corpus does it), none of them a language of the training corpus;
* ``chat/``: the ``chatterbot-corpus`` (PyPI) dialogues in Dutch, Indonesian, Korean, Swedish,
  Turkish and Ukrainian (``.corpora`` has its English, Chinese, German, Japanese and Italian);
* ``prose/``: the GNU Coding Standards (``gnu-standards``, plain text), Vim's user manual
  (``vim-runtime``, ``doc/usr_*.txt``) and the licences Debian ships in
  ``/usr/share/common-licenses`` (``base-files``).

then ``SOURCES.md`` and ``SOURCES.json`` as the evaluation corpus has them. ``--training DIR``
(a training corpus of ``scripts/build_training_corpus.py``) counts, per file, the lines of over
40 characters that also occur in training, and records the counts in ``SOURCES.json``. Only the
standard library, ``pip download``, ``apt-get download`` and ``dpkg-deb`` are used; downloads are
kept in ``--cache`` (default ``OUT_DIR/.cache``) and a rerun over a complete set does nothing.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import build_eval_corpus as ev
from build_training_corpus import troff_to_text

LIMIT = 250_000
BUILDER = "scripts/build_heldout_corpus.py"
PERL = "perl-modules-5.36"
RUBY = "libruby3.1"
MAN_LANGUAGES = ["nl", "vi", "sv", "cs", "uk", "el"]
CHAT_LANGUAGES = ["dutch", "indonesian", "korean", "swedish", "turkish", "ukrainian"]
# (domain, file name, Debian package, glob patterns under the package's root, how to read a file)
FILES: list[tuple[str, str, str, list[str], str]] = [
    ("code", "perl_modules.pm.txt", PERL, ["usr/share/perl/5.36.0/**/*.pm"], "text"),
    ("code", "ruby_stdlib.rb.txt", RUBY, ["usr/lib/ruby/3.1.0/**/*.rb"], "text"),
    ("code", "tcl_library.tcl.txt", "libtcl8.6", ["usr/share/tcltk/tcl8.6/**/*.tcl"], "text"),
    ("code", "jquery.js.txt", "libjs-jquery", ["usr/share/javascript/jquery/jquery.js"], "text"),
    ("code", "linux_uapi.h.txt", "linux-libc-dev", ["usr/include/linux/*.h"], "text"),
    ("math", "gap_library.g.txt", "gap-libs", ["usr/share/gap/lib/*.gd", "usr/share/gap/lib/*.gi"], "text"),
    ("prose", "gnu_coding_standards.txt", "gnu-standards", ["usr/share/doc/gnu-standards/standards.text.gz"], "text"),
    ("prose", "vim_user_manual.txt", "vim-runtime", ["usr/share/vim/vim90/doc/usr_*.txt"], "text"),
    ("prose", "common_licenses.txt", "base-files", ["usr/share/common-licenses/*"], "text"),
] + [
    ("multilingual", f"manpages.{lang}.txt", f"manpages-{lang}", [f"usr/share/man/{lang}/man*/*.gz"], "man")
    for lang in MAN_LANGUAGES
]
DEBIAN_PACKAGES = sorted({package for _, _, package, _, _ in FILES})


def read(path: Path, kind: str) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace")
    return troff_to_text(text) if kind == "man" else text


def gather(root: Path, patterns: list[str], kind: str) -> str:
    """The package's files that match ``patterns`` (sorted by path, links and folders left out),
    joined with a blank line, cut to ``LIMIT``."""
    paths = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file() and not p.is_symlink()})
    if not paths:
        raise ev.BuildError(f"nothing under {root.name} matches {', '.join(patterns)}")
    parts: list[str] = []
    size = 0
    for path in paths:
        text = read(path, kind).strip("\n")
        if text:
            parts.append(text + "\n")
            size += len(parts[-1].encode("utf-8"))
        if size > LIMIT:
            break
    return ev.cut_lines("\n".join(parts), LIMIT)


def chats(wheel: Path) -> list[ev.Output]:
    return [output._replace(text=ev.cut_lines(output.text, LIMIT)) for output in ev.chatterbot(wheel, CHAT_LANGUAGES)]


def long_lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) > 40}


def training_lines(folder: Path) -> set[str]:
    lines: set[str] = set()
    for path in sorted(folder.rglob("*.txt")):
        lines |= long_lines(path.read_text(encoding="utf-8", errors="replace"))
    return lines


def count_overlap(out: Path, entries: Iterable[dict[str, object]], training: set[str]) -> None:
    for entry in entries:
        lines = long_lines((out / str(entry["file"])).read_text(encoding="utf-8"))
        entry["long_lines"] = len(lines)
        entry["long_lines_in_training"] = len(lines & training)


def build(out: Path, cache: Path) -> list[dict[str, object]]:
    started = time.monotonic()
    (out / "SOURCES.json").unlink(missing_ok=True)
    entries = ev.write_outputs(out, chats(ev.pypi_archive(cache / "pypi", *ev.CHATTERBOT)), started)
    debs = ev.debian_packages(cache / "debian", DEBIAN_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="zip2zip-heldout-debs-") as tmp:
        root = Path(tmp)
        versions = {name: ev.unpack_deb(debs[name], root / name) for name in DEBIAN_PACKAGES}
        outputs = [
            ev.Output(domain, name, gather(root / package, patterns, kind), f"Debian {package} {versions[package]}")
            for domain, name, package, patterns, kind in FILES
        ]
        entries += ev.write_outputs(out, outputs, started)
    return entries


def write_manifest(out: Path, entries: list[dict[str, object]]) -> None:
    head = ev.SOURCES_MD_HEAD.replace("(development set)", "(far held-out set)").replace(
        "scripts/build_eval_corpus.py", BUILDER
    )
    ev.write_manifest(out, entries, BUILDER, head)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "out", type=Path, nargs="?", default=Path(".heldout"), help="folder to write (default .heldout)"
    )
    parser.add_argument("--cache", type=Path, help="where downloads are kept (default OUT_DIR/.cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the set is complete")
    parser.add_argument("--training", type=Path, help="a training corpus folder: count the lines it shares")
    args = parser.parse_args(argv)
    out: Path = args.out
    cache: Path = args.cache if args.cache is not None else out / ".cache"
    if not args.force and args.training is None and ev.corpus_is_complete(out):
        print(f"build_heldout_corpus: {out} is complete (SOURCES.json matches every file); nothing to do")
        return 0
    started = time.monotonic()
    print(f"build_heldout_corpus: building {out} (downloads cached in {cache})", flush=True)
    try:
        entries = build(out, cache.resolve())
        if args.training is not None:
            count_overlap(out, entries, training_lines(args.training))
        write_manifest(out, entries)
    except (ev.BuildError, OSError) as error:
        print(f"build_heldout_corpus: error: {error}", file=sys.stderr)
        return 1
    total = sum(int(str(e["bytes"])) for e in entries)
    print(f"build_heldout_corpus: wrote {len(entries)} files, {total:,} bytes, in {time.monotonic() - started:.1f} s")
    if args.training is not None:
        for e in entries:
            print(f"  {e['file']:<42} {e['long_lines_in_training']:>5} of {e['long_lines']:>6} long lines in training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
