#!/usr/bin/env bash
# A copy of the model folder SRC at DST with a decoding setting of its config.json changed, to
# evaluate or benchmark beside SRC: canonical_outputs (the canonical mask in forward, generate()
# and StaticGenerator; the default), marginal_first_token (generate() keeps the codes starting
# with the marginal's most likely next base token), or hypertoken_min_share=S (with the marginal,
# a hypertoken is written only at share S of its first token's probability).
# canonical.sh SRC DST [FLAG | hypertoken_min_share=S]
set -e
USAGE="usage: canonical.sh SRC DST [canonical_outputs | marginal_first_token | hypertoken_min_share=S]"
SRC=${1:?$USAGE}; DST=${2:?$USAGE}; FLAG=${3:-canonical_outputs}
case "$FLAG" in canonical_outputs|marginal_first_token|hypertoken_min_share=*) ;; *) echo "$USAGE" >&2; exit 2 ;; esac
rm -rf "$DST" && cp -r "$SRC" "$DST"
python - "$DST/config.json" "$FLAG" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
key, _, value = sys.argv[2].partition("=")
share = float(value) if value else None
if share is not None and not 0.0 <= share <= 1.0:
    sys.exit(f"hypertoken_min_share must lie in [0, 1], got {share}")
config[key] = True if share is None else share
json.dump(config, open(sys.argv[1], "w"), indent=1)
PY
echo "$DST: $FLAG"
