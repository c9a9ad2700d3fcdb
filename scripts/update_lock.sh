#!/usr/bin/env bash
# Writes requirements/lock.txt from the environment of the last `bash scripts/test.sh --latest`
# run (.venv-test-latest), so that the README's commands install those versions from then on.
# Run it only after that run passed; review and commit the diff of the lock.
#
#   bash scripts/test.sh --latest && bash scripts/update_lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ZIP2ZIP_TEST_VENV:-.venv-test-latest}
[[ -x $venv/bin/pip ]] || { echo "no environment at $venv: run bash scripts/test.sh --latest first" >&2; exit 1; }
python_version=$("$venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
{
  echo "# Known-good versions of everything scripts/test.sh and scripts/demo.sh install (Linux $(uname -m),"
  echo "# CPython $python_version), applied as pip constraints (PIP_CONSTRAINT). Refresh: bash scripts/test.sh --latest,"
  echo "# then bash scripts/update_lock.sh (writes this file from that run's environment)."
  echo "# Written $(date -u +%F) from the environment of a passing run."
  "$venv/bin/pip" freeze --all --exclude zip2zip | grep -v '^-e' | sort -f
} > requirements/lock.txt
echo "wrote requirements/lock.txt ($(grep -vc '^#' requirements/lock.txt) pins); git diff requirements/lock.txt shows what changed"
