#!/usr/bin/env bash
# On the device: the distilled chats (the base model's answers), then their sha256.
set -e
export PYTHONPATH=/tmp/site
D=/root/cache/data
python scripts/distill.py $D/chat.jsonl --corpus $D/tc --samples 1 --corpus-prompts 2000 --batch-size 128 2>&1 | tail -3
sha256sum $D/chat.jsonl; wc -l $D/chat.jsonl
