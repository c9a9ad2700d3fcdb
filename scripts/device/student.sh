#!/usr/bin/env bash
# On the device: a zip2zip model's own sampled answers to the distillation prompts (scripts/distill.py
# --student; on-policy training data), into $OUT/NAME.jsonl.xz for git, and $D/NAME.jsonl for
# train.sh's EXTRA_DATA. student.sh MODEL_FOLDER NAME [CORPUS_PROMPTS]
set -e
export PYTHONPATH=/tmp/site
D=/root/cache/data; M=${1:?usage: student.sh MODEL_FOLDER NAME [CORPUS_PROMPTS]}; N=${2:?name}
python scripts/distill.py $D/$N.jsonl --student $M --corpus $D/tc --samples 1 --corpus-prompts ${3:-2000} \
  --batch-size 128 2>&1 | grep -v "it/s" | tail -3
sha256sum $D/$N.jsonl; wc -l $D/$N.jsonl
mkdir -p $OUT && xz -9 -c $D/$N.jsonl > $OUT/$N.jsonl.xz && ls -la $OUT/$N.jsonl.xz
