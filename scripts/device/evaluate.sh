#!/usr/bin/env bash
# On the device: the evaluations of MODEL side by side on the one GPU (bits per byte on .corpora,
# checked answers, HumanEval, and bits per byte on the far held-out set). evaluate.sh MODEL NAME
set -e
export PYTHONPATH=/tmp/site
D=/root/cache/data; M=$1; N=$2
mkdir -p $OUT
# Per-name scratch files, so that two evaluations can share the GPU in one call.
L=/tmp/eval_$N; R=$L/results; mkdir -p $R
# EVAL_TIMEOUT (s) bounds each evaluation; lower it when two share a call.
T=${EVAL_TIMEOUT:-560}
printf 'x = 1\n' > $L/tiny.txt
timeout $T python -m zip2zip eval --model $M --data $D/.corpora/*/*.txt --window 1024 --max-windows 8 \
  --max-new-codes 128 --json $R/${N}_eval.json > $L/p1.md 2> $L/e1.log &
timeout $T python -m zip2zip eval --model $M --data $L/tiny.txt --window 8 --max-windows 1 --prompts none \
  --answers --json $R/${N}_answers.json > $L/p2.md 2> $L/e2.log &
timeout $T python -m zip2zip eval --model $M --data $L/tiny.txt --window 8 --max-windows 1 --prompts none \
  --humaneval 0 --humaneval-data $D/HumanEval.jsonl.gz --humaneval-batch 82 --json $R/${N}_humaneval.json \
  > $L/p3.md 2> $L/e3.log &
# The far held-out set (languages and kinds of text absent from training), when setup.sh unpacked it.
: > $L/p4.md; : > $L/e4.log
if [ -d $D/.heldout ]; then
  timeout $T python -m zip2zip eval --model $M --data $D/.heldout/*/*.txt --window 1024 --max-windows 4 \
    --prompts none --json $R/${N}_heldout.json > $L/p4.md 2> $L/e4.log &
fi
wait || true
for f in $L/e1.log $L/e2.log $L/e3.log $L/e4.log; do tail -n 3 $f; done
cat $L/p1.md $L/p2.md $L/p3.md $L/p4.md > $R/${N}_printed.md
grep -v "^$" $R/${N}_printed.md | head -90
# One file per model comes back (a call returns at most 8): tar -xf NAME_results.tar.
tar -cf $OUT/${N}_results.tar -C $R .
# The model folder itself came back from train.sh; SEND_MODEL=1 sends it again.
if [[ -n "${SEND_MODEL:-}" && "$M" == /root/* ]]; then
  tar -cf - -C "$(dirname $M)" --exclude=checkpoints "$(basename $M)" | split -b 15M - $OUT/${N}_model.tar.
fi
ls -la $OUT
