#!/usr/bin/env bash
# On the device: the evaluations of MODEL side by side on the one GPU (bits per byte on .corpora,
# checked answers, HumanEval, and bits per byte on the far held-out set). evaluate.sh MODEL NAME
set -e
export PYTHONPATH=/tmp/site
D=/root/cache/data; M=$1; N=$2
mkdir -p $OUT
printf 'x = 1\n' > /tmp/tiny.txt
timeout 560 python -m zip2zip eval --model $M --data $D/.corpora/*/*.txt --window 1024 --max-windows 8 \
  --max-new-codes 128 --json $OUT/${N}_eval.json > /tmp/p1.md 2> /tmp/e1.log &
timeout 560 python -m zip2zip eval --model $M --data /tmp/tiny.txt --window 8 --max-windows 1 --prompts none \
  --answers --json $OUT/${N}_answers.json > /tmp/p2.md 2> /tmp/e2.log &
timeout 560 python -m zip2zip eval --model $M --data /tmp/tiny.txt --window 8 --max-windows 1 --prompts none \
  --humaneval 0 --humaneval-data $D/HumanEval.jsonl.gz --humaneval-batch 82 --json $OUT/${N}_humaneval.json \
  > /tmp/p3.md 2> /tmp/e3.log &
# The far held-out set (languages and kinds of text absent from training), when setup.sh unpacked it.
: > /tmp/p4.md; : > /tmp/e4.log
if [ -d $D/.heldout ]; then
  timeout 560 python -m zip2zip eval --model $M --data $D/.heldout/*/*.txt --window 1024 --max-windows 4 \
    --prompts none --json $OUT/${N}_heldout.json > /tmp/p4.md 2> /tmp/e4.log &
fi
wait || true
for f in /tmp/e1.log /tmp/e2.log /tmp/e3.log /tmp/e4.log; do tail -n 3 $f; done
cat /tmp/p1.md /tmp/p2.md /tmp/p3.md /tmp/p4.md > $OUT/${N}_printed.md
grep -v "^$" $OUT/${N}_printed.md | head -90
if [[ "$M" == /root/* ]]; then
  tar -cf - -C "$(dirname $M)" --exclude=checkpoints "$(basename $M)" | split -b 15M - $OUT/${N}_model.tar.
fi
ls -la $OUT
