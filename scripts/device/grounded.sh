#!/usr/bin/env bash
# On the device: the base model's greedy answers to edit prompts around the corpus's code
# (scripts/distill.py --grounded-prompts N, whole answers only), into $D/grounded.jsonl, and a
# copy for git in $OUT. grounded.sh [N]
set -e
export PYTHONPATH=/tmp/site
D=/root/cache/data
python scripts/distill.py $D/grounded.jsonl --corpus $D/tc --only-grounded --grounded-prompts ${1:-1000} \
  --grounded-max-new-tokens 640 --batch-size 200 2>&1 | grep -v "it/s" | tail -3
sha256sum $D/grounded.jsonl; wc -l $D/grounded.jsonl
mkdir -p $OUT && xz -9 -c $D/grounded.jsonl > $OUT/distilled_grounded.jsonl.xz
