"""Assemble zip2zip's training corpus from text that installed PyPI and Debian packages ship.

    python scripts/build_training_corpus.py OUT_DIR [--code-mb 12] [--prose-mb 6]

* code: the Python sources of PyPI packages (never the CPython standard library, which the
  evaluation corpus uses), in a fixed order, up to ``--code-mb``;
* prose: the long descriptions (READMEs) in the ``METADATA`` of every installed distribution and
  the README/changelog files under ``/usr/share/doc`` (Debian), up to ``--prose-mb``.

Kept apart from the evaluation text: every line of ``../shared/corpora`` longer than 40
characters is dropped wherever it appears in a training file (and counted). Writes
``OUT_DIR/code/*.txt``, ``OUT_DIR/prose/*.txt`` and ``OUT_DIR/MANIFEST.json`` (each source and its
size). Chat data comes from self-distillation: ``scripts/distill.py``.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import sys
from pathlib import Path

CODE_PACKAGES = ["transformers", "accelerate", "peft", "huggingface_hub", "hypothesis", "safetensors", "tqdm", "jinja2",
                 "numpy", "mypy", "tokenizers", "packaging", "pluggy", "_pytest", "markupsafe", "yaml", "filelock"]
EVAL_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def eval_lines() -> set[str]:
    lines: set[str] = set()
    for file in sorted(EVAL_CORPUS.rglob("*.txt")):
        lines.update(line.strip() for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if len(line.strip()) > 40)
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
    try:
        module = __import__(name)
    except ImportError:
        return []
    roots = [Path(p) for p in getattr(module, "__path__", [])]
    return sorted(p for root in roots for p in root.rglob("*.py") if "/tests/" not in str(p))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--code-mb", type=float, default=12.0)
    parser.add_argument("--prose-mb", type=float, default=6.0)
    args = parser.parse_args()
    out = Path(args.out)
    forbidden = eval_lines()
    stats = {"dropped_lines": 0}
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
        manifest["code"].append({"package": f"PyPI {name} {version}".strip(), "files": len(parts), "bytes": len(text.encode())})

    (out / "prose").mkdir(parents=True, exist_ok=True)
    budget = int(args.prose_mb * 1e6)
    readmes = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else ""
        if isinstance(body, str) and len(body) > 500:
            readmes.append(body)
    text = clean("\n\n".join(readmes), forbidden, stats)[: budget // 2]
    (out / "prose" / "pypi_readmes.txt").write_text(text)
    manifest["prose"].append({"source": "METADATA long descriptions of the installed PyPI distributions",
                              "files": len(readmes), "bytes": len(text.encode())})
    debian = []
    for doc in sorted(Path("/usr/share/doc").glob("*/*")):
        if doc.name.lower().startswith(("readme", "changelog.debian", "news")) and doc.is_file():
            raw = gzip.decompress(doc.read_bytes()) if doc.suffix == ".gz" else doc.read_bytes()
            debian.append(raw.decode("utf-8", errors="replace"))
    text = clean("\n\n".join(debian), forbidden, stats)[: budget // 2]
    (out / "prose" / "debian_docs.txt").write_text(text)
    manifest["prose"].append({"source": "README, NEWS and changelog.Debian files under /usr/share/doc",
                              "files": len(debian), "bytes": len(text.encode())})
    manifest["dropped_eval_lines"] = [{"lines": stats["dropped_lines"]}]
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
