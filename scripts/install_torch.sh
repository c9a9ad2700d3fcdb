#!/usr/bin/env bash
# Installs torch from PyPI into a virtual environment one distribution at a time, without pip's
# cache, so that the disk holds at most one group of downloads beside what is already installed.
#
#   scripts/install_torch.sh VENV [TORCH_REQUIREMENT]
#
# PyPI's Linux torch wheels bring about 5 GB of CUDA libraries (torch imports them even on a CPU).
# One `pip install torch` downloads all of them (about 3 GB) before it installs any, and pip's
# cache keeps another copy: a CI machine ran out of disk that way. Installing torch alone
# (--no-deps) and then each of its requirements in turn keeps the peak near the installed size.
# Does nothing when the environment already has torch.
set -euo pipefail
venv=${1:?usage: scripts/install_torch.sh VENV [TORCH_REQUIREMENT]}
torch_requirement=${2:-torch}
[[ -x $venv/bin/python ]] || { echo "no virtual environment at $venv (no $venv/bin/python)" >&2; exit 1; }
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
pip=("$venv/bin/python" -m pip install -q --no-warn-conflicts)

if "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  exit 0
fi
"${pip[@]}" packaging
"${pip[@]}" --no-deps "$torch_requirement"
# torch's own requirements whose markers hold here (no extras).
mapfile -t requirements < <("$venv/bin/python" - <<'PY'
import importlib.metadata

from packaging.requirements import Requirement

for text in importlib.metadata.requires("torch") or []:
    requirement = Requirement(text)
    if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
        requirement.marker = None
        print(requirement)
PY
)
for requirement in "${requirements[@]}"; do
  "${pip[@]}" "$requirement"
done
"$venv/bin/python" -W ignore -c 'import torch' || { echo "torch does not import after installing ${requirements[*]}" >&2; exit 1; }
