#!/usr/bin/env bash
# A copy of the model folder SRC at DST with a decoding flag of its config.json on, to evaluate or
# benchmark beside SRC: canonical_outputs (the canonical mask in forward, generate() and
# StaticGenerator; the default) or marginal_first_token (generate() keeps the codes starting
# with the marginal's most likely next base token).
# canonical.sh SRC DST [FLAG]
set -e
SRC=${1:?usage: canonical.sh SRC DST [FLAG]}; DST=${2:?usage: canonical.sh SRC DST [FLAG]}; FLAG=${3:-canonical_outputs}
case "$FLAG" in canonical_outputs|marginal_first_token) ;; *) echo "FLAG must be canonical_outputs or marginal_first_token" >&2; exit 2 ;; esac
rm -rf "$DST" && cp -r "$SRC" "$DST"
python - "$DST/config.json" "$FLAG" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config[sys.argv[2]] = True
json.dump(config, open(sys.argv[1], "w"), indent=1)
PY
echo "$DST: $FLAG on"
