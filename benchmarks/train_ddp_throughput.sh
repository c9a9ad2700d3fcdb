# Training throughput of `zip2zip train` on one GPU and on two under `accelerate launch` (DDP),
# in one run, on a randomly initialised model of SmolLM2-135M's shape (no GGUF needed) and the
# training corpus of scripts/build_training_corpus.py. Run on the device machine with the wheel
# and corpus.tar.xz carried in .carry/d:   bash benchmarks/train_ddp_throughput.sh SECONDS [BATCH]
set -e
S=/tmp/site
pip install -q --no-deps --target $S .carry/d/*.whl 2>&1 | grep -v WARN | tail -1
cp $S/zip2zip/_core.abi3.so python/zip2zip/  # the Python code of this checkout, the wheel's Rust core
export PYTHONPATH=$PWD/python:$S
mkdir -p /root/data && tar -C /root/data -xJf .carry/d/corpus.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
python benchmarks/smollm2_shaped_base.py models/smollm2-135m-zip2zip /root/base 2>&1 | grep -v Warn | tail -1
C=/root/data/corpus
B=${2:-32}
A="--base /root/base --data $C/code $C/prose $C/multilingual $C/math --bf16 --window-codes 1024 --steps 100000 --warmup 40 --lora-r 8 --encoder-layers 1 --encoder-latent-size 192 --workers 8 --max-seconds $1 --batch-size $B"
python -m zip2zip train $A --out /root/one 2>&1 | tail -1 > $OUT/one.json; cat $OUT/one.json
accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision bf16 --dynamo_backend no -m zip2zip train $A --out /root/two 2>&1 | grep '"processes"' | tail -1 > $OUT/two.json; cat $OUT/two.json
python - <<'PY'
import json, os
one, two = (json.load(open(os.path.join(os.environ["OUT"], f))) for f in ("one.json", "two.json"))
for name, r in (("1 GPU", one), ("2 GPUs, DDP", two)):
    print(f"| {name} | {r['step']} | {r['seconds'] / r['step']:.3f} | {r['codes_per_s']:,.0f} | {r['base_tokens_per_s']:,.0f} |")
print(f"two over one: {two['codes_per_s'] / one['codes_per_s']:.2f}x")
PY
