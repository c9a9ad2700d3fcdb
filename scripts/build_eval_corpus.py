"""Build zip2zip's development/evaluation text corpus from PyPI and Debian packages.

    python3 scripts/build_eval_corpus.py OUT_DIR [--cache DIR] [--force]

This is the project's own build of the corpus that ``zip2zip.corpus`` reads (point it at OUT_DIR
with ``$ZIP2ZIP_CORPORA``): plain UTF-8 text, one folder per domain, each file cut at a line
boundary from text that ships inside a public package. It writes

* ``code/cpython_stdlib.py.txt``: the running interpreter's standard library, the ``*.py`` files
  directly in ``sysconfig.get_paths()["stdlib"]`` sorted by name, joined, about 1.5 MB;
* ``math/champ_problems_solutions.txt``: PyPI ``champ-dataset`` (competition problems with their
  step-by-step solutions and answers), and ``math/coq_stdlib.v.txt``: the ``.v`` sources of
  Debian's ``libcoq-stdlib`` (the Coq standard library), about 1 MB;
* ``chat/chatterbot_{english,chinese,german,japanese,italian}.txt``: the YAML dialogues of PyPI
  ``chatterbot-corpus``, one ``User:``/``Bot:`` line per turn, a blank line between conversations;
* ``multilingual/debian_reference.{de,fr,ja,zh-cn,es}.txt``: the plain-text edition of the Debian
  Reference that Debian's ``debian-reference-LANG`` packages ship, about 400 KB each;
* ``prose/kjv_bible.txt``: the King James Bible of Debian's ``bible-kjv-text``, decoded by the
  ``bible`` program of Debian's ``bible-kjv`` (one verse a line), about 1 MB; and
  ``prose/botchan_gutenberg.txt``: *Botchan* (Project Gutenberg) from the ``sentencepiece``
  source archive on PyPI (``test/botchan.txt``);

then ``SOURCES.md`` and, last, ``SOURCES.json`` (each file's domain, package and version, size
and sha256). Only the standard library is used (this runs before any virtual environment
exists), plus ``python -m pip download`` for PyPI, and ``apt-get download`` and ``dpkg-deb`` for
Debian (``apt-get update`` is run once if the package lists are missing). Downloads are kept in
``--cache`` (default ``OUT_DIR/.cache``), so a rerun downloads nothing; a rerun over a complete
corpus (every file listed in SOURCES.json present with its sha256) does nothing unless
``--force``. The same packages give byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import NamedTuple

# Exact PyPI versions (the newest of each when this was written, except sentencepiece: the
# build dependencies of the 0.2.3 source archive take minutes to install just to download it).
CHAMP = ("champ-dataset", "1.0.0")
CHATTERBOT = ("chatterbot-corpus", "1.3.3")
SENTENCEPIECE = ("sentencepiece", "0.2.1")

REFERENCE_LANGUAGES = ["de", "fr", "ja", "zh-cn", "es"]
CHAT_LANGUAGES = ["english", "chinese", "german", "japanese", "italian"]
DEBIAN_PACKAGES = ["bible-kjv", "bible-kjv-text", "libcoq-stdlib"] + [
    f"debian-reference-{lang}" for lang in REFERENCE_LANGUAGES
]

# Size limits in bytes; every cut ends at a line boundary at or below its limit.
CODE_LIMIT = 1_500_000
COQ_LIMIT = 1_000_000
BIBLE_LIMIT = 1_000_000
REFERENCE_LIMIT = 400_000

# Passed to the ``bible`` program: every verse from the first to the last.
BIBLE_RANGE = "Gen1:1-Rev22:21"
COMMAND_TIMEOUT_S = 600


class BuildError(Exception):
    """A step that failed, with a one-line message naming it."""


class Output(NamedTuple):
    """One corpus file: where it goes, its text and the package it came from."""

    domain: str
    name: str
    text: str
    source: str


# ----------------------------------------------------------------------------------------------
# Small helpers


def cut_lines(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that ends a line and is at most ``limit`` bytes in UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    end = data.rfind(b"\n", 0, limit)
    return data[: end + 1].decode("utf-8") if end >= 0 else ""


def run(command: list[str], step: str, cwd: Path | None = None) -> str:
    """Run ``command`` and return its standard output; a failure raises BuildError naming ``step``."""
    # The versions here are pinned above; a caller's pip constraints (scripts/test.sh locks the
    # test environment through PIP_CONSTRAINT) are for other packages and may pin these differently.
    env = {key: value for key, value in os.environ.items() if key != "PIP_CONSTRAINT"}
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"{step}: {error}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise BuildError(f"{step} failed: {last}")
    return done.stdout.decode("utf-8", errors="replace")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Downloads


def pypi_archive(cache: Path, name: str, version: str, sdist: bool = False) -> Path:
    """The cached wheel (or, with ``sdist``, source archive) of ``name==version``, downloading it once."""
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"
    patterns = [f"{stem}.tar.gz", f"{name}-{version}.tar.gz"] if sdist else [f"{stem}-*.whl"]

    def cached() -> list[Path]:
        return sorted(p for pattern in patterns for p in cache.glob(pattern))

    if not cached():
        cache.mkdir(parents=True, exist_ok=True)
        kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                *kind,
                "--dest",
                str(cache),
                f"{name}=={version}",
            ],
            f"pip download {name}=={version}",
        )
        if not cached():
            raise BuildError(f"pip download {name}=={version} gave no {'sdist' if sdist else 'wheel'}")
    return cached()[-1]


def debian_packages(cache: Path, names: list[str]) -> dict[str, Path]:
    """The cached ``.deb`` of each package, fetching the missing ones with ``apt-get download``."""
    cache.mkdir(parents=True, exist_ok=True)

    def missing() -> list[str]:
        return [name for name in names if not sorted(cache.glob(f"{name}_*.deb"))]

    if missing():
        try:
            run(["apt-get", "download", *missing()], f"apt-get download {' '.join(missing())}", cwd=cache)
        except BuildError:
            # Usually the package lists are missing or stale: refresh them once and try again.
            run(["apt-get", "update"], "apt-get update")
            run(["apt-get", "download", *missing()], f"apt-get download {' '.join(missing())}", cwd=cache)
    if missing():
        raise BuildError(f"apt-get download gave no .deb for {' '.join(missing())}")
    return {name: sorted(cache.glob(f"{name}_*.deb"))[-1] for name in names}


def unpack_deb(deb: Path, dest: Path) -> str:
    """Unpack ``deb`` into ``dest`` with ``dpkg-deb -x`` and return the package's version."""
    run(["dpkg-deb", "-x", str(deb), str(dest)], f"dpkg-deb -x {deb.name}")
    return run(["dpkg-deb", "-f", str(deb), "Version"], f"dpkg-deb -f {deb.name}").strip()


# ----------------------------------------------------------------------------------------------
# code


def cpython_stdlib() -> Output:
    """The top-level standard library modules of this interpreter, sorted by name, joined."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"), key=lambda p: p.name)
    if not files:
        raise BuildError(f"no *.py files in the standard library folder {stdlib}")
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    version = ".".join(str(part) for part in sys.version_info[:3])
    return Output("code", "cpython_stdlib.py.txt", cut_lines(text, CODE_LIMIT), f"CPython {version} stdlib")


# ----------------------------------------------------------------------------------------------
# math


def champ(wheel: Path) -> Output:
    """Each CHAMP problem, its solution (the steps joined) and its answer, in the dataset's order."""
    with zipfile.ZipFile(wheel) as archive:
        names = sorted(n for n in archive.namelist() if re.fullmatch(r"champ_dataset/dataset_files/v\d+\.json", n))
        if not names:
            raise BuildError(f"{wheel.name} has no champ_dataset/dataset_files/v*.json")
        data = json.loads(archive.read(names[-1]))
    blocks = []
    for key, problem in data["problems"].items():
        # The texts are taken as they are (a few steps end with a space).
        steps = " ".join(step["_text"] for step in problem["solution"]["steps"])
        blocks.append(f"Problem ({key}): {problem['_text']}\nSolution: {steps}\nAnswer: {problem['_answer'].strip()}\n")
    return Output("math", "champ_problems_solutions.txt", "\n".join(blocks), f"PyPI {CHAMP[0]} {CHAMP[1]}")


def coq_stdlib(root: Path, version: str) -> Output:
    """The ``.v`` sources of the Coq standard library, sorted by path, joined, about 1 MB."""
    files = sorted(root.rglob("*.v"), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise BuildError("libcoq-stdlib has no .v files")
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    return Output("math", "coq_stdlib.v.txt", cut_lines(text, COQ_LIMIT), f"Debian libcoq-stdlib {version}")


# ----------------------------------------------------------------------------------------------
# chat: a parser for the YAML layout of chatterbot-corpus (a ``conversations:`` list of lists of
# strings), so that the result does not depend on whether PyYAML happens to be installed.


def _unquote(value: str, lines: list[str], i: int) -> tuple[str, int]:
    """A quoted scalar starting at ``value`` (which may go on over the next lines); the line after it."""
    quote = value[0]
    body = value[1:]
    while True:
        end = _closing_quote(body, quote)
        if end >= 0 or i >= len(lines):
            break
        # A quoted scalar that goes on over lines: line breaks fold into spaces.
        body = body.rstrip() + " " + lines[i].strip()
        i += 1
    body = body[:end] if end >= 0 else body
    if quote == "'":
        return body.replace("''", "'"), i
    # Double quotes: resolve the backslash escapes through JSON, which shares the common ones.
    try:
        return str(json.loads('"' + body.replace("\\'", "'").replace("\t", "\\t") + '"')), i
    except json.JSONDecodeError:
        return body, i


def _closing_quote(body: str, quote: str) -> int:
    """The index of the quote that closes ``body``, or -1."""
    j = 0
    while j < len(body):
        if quote == "'" and body.startswith("''", j):
            j += 2
            continue
        if quote == '"' and body[j] == "\\":
            j += 2
            continue
        if body[j] == quote:
            return j
        j += 1
    return -1


def _scalar(value: str, indent: int, lines: list[str], i: int) -> tuple[str, int]:
    """The scalar that starts with ``value`` on line ``i - 1`` of a list item indented ``indent``."""
    if value[:1] in ("'", '"'):
        return _unquote(value, lines, i)
    if value[:1] in ("|", ">"):
        # A block scalar: the following lines indented deeper than the item, kept (``|``) or
        # folded into one line (``>``), ending with one newline (or none with ``-``).
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        margin = min((len(b) - len(b.lstrip()) for b in block if b.strip()), default=0)
        body = [b[margin:] for b in block]
        text = "\n".join(body) if value[0] == "|" else " ".join(b.strip() for b in body)
        return (text if "-" in value else text + "\n"), i
    # A plain scalar; deeper indented lines after it continue it, joined with spaces.
    parts = [value.split(" #")[0].strip()]
    while (
        i < len(lines)
        and lines[i].strip()
        and len(lines[i]) - len(lines[i].lstrip()) > indent
        and not lines[i].lstrip().startswith("- ")
    ):
        parts.append(lines[i].strip())
        i += 1
    return " ".join(parts), i


def parse_conversations(text: str) -> list[list[str]]:
    """The ``conversations`` of a chatterbot-corpus YAML file: each a list of messages. An entry
    that is a single string rather than a list (a slip in a few files) is left out."""
    lines = text.replace("\r\n", "\n").split("\n")
    conversations: list[list[str]] = []
    current: list[str] | None = None
    in_conversations = False
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "-")):
            in_conversations = line.split(":")[0].strip() == "conversations"
            current = None
            continue
        if not in_conversations:
            continue
        if line.startswith("- - ") or line.rstrip() == "- -":
            current = []
            conversations.append(current)
            value, i = _scalar(line[4:].strip(), 2, lines, i)
            current.append(value)
        elif line.startswith("- "):
            # A conversation that is a plain string, not a list: skip it and what continues it.
            current = None
            _, i = _scalar(line[2:].strip(), 0, lines, i)
        elif line.lstrip().startswith("- ") and current is not None:
            indent = len(line) - len(line.lstrip())
            value, i = _scalar(line.lstrip()[2:].strip(), indent, lines, i)
            current.append(value)
    return [c for c in conversations if c]


def chatterbot(wheel: Path, languages: list[str] = CHAT_LANGUAGES) -> list[Output]:
    """One file per language of ``languages``: every conversation of the language's YAML files
    (sorted by name)."""
    outputs = []
    with zipfile.ZipFile(wheel) as archive:
        for lang in languages:
            names = sorted(
                n for n in archive.namelist() if re.fullmatch(rf"chatterbot_corpus/data/{lang}/[^/]+\.ya?ml", n)
            )
            if not names:
                raise BuildError(f"{wheel.name} has no YAML files for {lang}")
            blocks = []
            for name in names:
                for conversation in parse_conversations(archive.read(name).decode("utf-8-sig")):
                    turns = [
                        f"{'User' if k % 2 == 0 else 'Bot'}: {message.strip()}"
                        for k, message in enumerate(conversation)
                    ]
                    blocks.append("\n".join(turns))
            outputs.append(
                Output(
                    "chat",
                    f"chatterbot_{lang}.txt",
                    "\n\n".join(blocks) + "\n",
                    f"PyPI {CHATTERBOT[0]} {CHATTERBOT[1]}",
                )
            )
    return outputs


# ----------------------------------------------------------------------------------------------
# multilingual


def debian_reference(root: Path, lang: str, version: str) -> Output:
    """The Debian Reference in ``lang``: the plain-text edition the package ships."""
    plain = root / "usr" / "share" / "debian-reference" / f"debian-reference.{lang}.txt.gz"
    if not plain.is_file():
        raise BuildError(f"debian-reference-{lang} has no plain-text edition ({plain.name})")
    text = gzip.decompress(plain.read_bytes()).decode("utf-8")
    return Output(
        "multilingual",
        f"debian_reference.{lang}.txt",
        cut_lines(text, REFERENCE_LIMIT),
        f"Debian debian-reference-{lang} {version}",
    )


# ----------------------------------------------------------------------------------------------
# prose


def kjv_bible(program_root: Path, text_root: Path, versions: dict[str, str]) -> Output:
    """The King James Bible, one verse a line (``Ge1:1 In the beginning ...``), about 1 MB."""
    program = program_root / "usr" / "bin" / "bible"
    data = text_root / "usr" / "lib"
    if not program.is_file() or not (data / "bible.data").is_file():
        raise BuildError("bible-kjv / bible-kjv-text do not have usr/bin/bible and usr/lib/bible.data")
    # -f turns pretty-printing off: each verse on one line after its reference.
    text = run([str(program), "-f", "-p", str(data), BIBLE_RANGE], "bible-kjv's bible program")
    if not text.startswith("Ge1:1 "):
        raise BuildError("bible-kjv's bible program did not print Genesis 1:1 first")
    source = f"Debian bible-kjv-text {versions['bible-kjv-text']} (read by bible-kjv {versions['bible-kjv']})"
    return Output("prose", "kjv_bible.txt", cut_lines(text, BIBLE_LIMIT), source)


def botchan(sdist: Path) -> Output:
    """*Botchan* as the sentencepiece source archive ships it, without its BOM and CR characters."""
    with tarfile.open(sdist) as archive:
        member = next((m for m in archive.getmembers() if m.isfile() and m.name.endswith("/botchan.txt")), None)
        handle = archive.extractfile(member) if member is not None else None
        if handle is None:
            raise BuildError(f"{sdist.name} has no botchan.txt")
        raw = handle.read()
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline=None).read()
    return Output(
        "prose",
        "botchan_gutenberg.txt",
        text,
        f"PyPI {SENTENCEPIECE[0]} {SENTENCEPIECE[1]} (source archive, test/botchan.txt)",
    )


# ----------------------------------------------------------------------------------------------
# Manifest


SOURCES_MD_HEAD = """# Benchmark corpus (development set)

Plain UTF-8 text, one folder per domain, used to measure compression (tokens per byte, token
reduction) and throughput side by side. Every file was cut at line boundaries from text that
ships inside public packages; nothing here was written for this project. Built by
`scripts/build_eval_corpus.py`; `SOURCES.json` has each file's sha256.

| domain | file | bytes | taken from |
| --- | --- | --- | --- |
"""
SOURCES_MD_TAIL = """
Report results per domain and never tune an algorithm to one file: other text of the same
domains is used to check the figures.
"""


def corpus_is_complete(out: Path) -> bool:
    """Whether ``out/SOURCES.json`` exists and every file it lists is there with its sha256."""
    try:
        manifest = json.loads((out / "SOURCES.json").read_text(encoding="utf-8"))
        files = manifest["files"]
        return bool(files) and all(sha256((out / entry["file"]).read_bytes()) == entry["sha256"] for entry in files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_outputs(out: Path, outputs: list[Output], started: float) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for output in outputs:
        data = output.text.encode("utf-8")
        relative = f"{output.domain}/{output.name}"
        write_atomic(out / relative, data)
        entries.append(
            {
                "file": relative,
                "domain": output.domain,
                "source": output.source,
                "bytes": len(data),
                "sha256": sha256(data),
            }
        )
        print(
            f"  {relative:<42} {len(data):>9,} bytes  {output.source}  ({time.monotonic() - started:.1f} s)", flush=True
        )
    return entries


def build(out: Path, cache: Path) -> list[dict[str, object]]:
    started = time.monotonic()
    # A manifest never describes files that are not (yet) there: drop the old one first.
    (out / "SOURCES.json").unlink(missing_ok=True)
    entries = write_outputs(out, [cpython_stdlib()], started)

    pypi = cache / "pypi"
    champ_wheel = pypi_archive(pypi, *CHAMP)
    chatterbot_wheel = pypi_archive(pypi, *CHATTERBOT)
    entries += write_outputs(out, [champ(champ_wheel)] + chatterbot(chatterbot_wheel), started)
    entries += write_outputs(out, [botchan(pypi_archive(pypi, *SENTENCEPIECE, sdist=True))], started)

    debs = debian_packages(cache / "debian", DEBIAN_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="zip2zip-eval-debs-") as tmp:
        root = Path(tmp)
        versions = {name: unpack_deb(debs[name], root / name) for name in DEBIAN_PACKAGES}
        outputs = [coq_stdlib(root / "libcoq-stdlib", versions["libcoq-stdlib"])]
        outputs += [
            debian_reference(root / f"debian-reference-{lang}", lang, versions[f"debian-reference-{lang}"])
            for lang in REFERENCE_LANGUAGES
        ]
        outputs.append(kjv_bible(root / "bible-kjv", root / "bible-kjv-text", versions))
        entries += write_outputs(out, outputs, started)
    return entries


def write_manifest(
    out: Path,
    entries: list[dict[str, object]],
    builder: str = "scripts/build_eval_corpus.py",
    head: str = SOURCES_MD_HEAD,
) -> None:
    """``SOURCES.md`` (``head``, then a row a file) and, last, ``SOURCES.json`` naming ``builder``."""
    entries = sorted(entries, key=lambda e: str(e["file"]))
    rows = "".join(f"| {e['domain']} | {Path(str(e['file'])).name} | {e['bytes']} | {e['source']} |\n" for e in entries)
    write_atomic(out / "SOURCES.md", (head + rows + SOURCES_MD_TAIL).encode("utf-8"))
    manifest = {"builder": builder, "files": entries}
    # Written last: its presence means every file it lists was written.
    write_atomic(out / "SOURCES.json", (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the corpus to")
    parser.add_argument("--cache", type=Path, help="where downloads are kept (default OUT_DIR/.cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the corpus is complete")
    args = parser.parse_args(argv)
    out: Path = args.out
    cache: Path = args.cache if args.cache is not None else out / ".cache"
    if not args.force and corpus_is_complete(out):
        print(f"build_eval_corpus: {out} is complete (SOURCES.json matches every file); nothing to do")
        return 0
    started = time.monotonic()
    print(f"build_eval_corpus: building {out} (downloads cached in {cache})", flush=True)
    try:
        entries = build(out, cache.resolve())
        write_manifest(out, entries)
    except BuildError as error:
        print(f"build_eval_corpus: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"build_eval_corpus: error: {error}", file=sys.stderr)
        return 1
    total = sum(int(str(e["bytes"])) for e in entries)
    print(f"build_eval_corpus: wrote {len(entries)} files, {total:,} bytes, in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
