#!/usr/bin/env bash
# A copy of the model folder SRC at DST with config.canonical_outputs on (the canonical mask in
# forward, generate() and StaticGenerator), to evaluate or benchmark beside SRC.
# canonical.sh SRC DST
set -e
SRC=${1:?usage: canonical.sh SRC DST}; DST=${2:?usage: canonical.sh SRC DST}
rm -rf "$DST" && cp -r "$SRC" "$DST"
python - "$DST/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["canonical_outputs"] = True
json.dump(config, open(sys.argv[1], "w"), indent=1)
PY
echo "$DST: canonical_outputs on"
