# Training throughput of `zip2zip train` on one GPU and on two under `accelerate launch` (DDP),
# in one run, on a randomly initialised model of SmolLM2-135M's shape (no GGUF needed) and the
# training corpus of scripts/build_training_corpus.py. Run on the device machine with the wheel
# and corpus.tar.xz carried in .carry/d:   bash benchmarks/train_ddp_throughput.sh SECONDS
set -e
S=/tmp/site
pip install -q --no-deps --target $S .carry/d/*.whl 2>&1 | grep -v WARN | tail -1
export PYTHONPATH=$S
mkdir -p /root/data && tar -C /root/data -xJf .carry/d/corpus.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
python benchmarks/smollm2_shaped_base.py models/smollm2-135m-zip2zip /root/base 2>&1 | grep -v Warn | tail -1
A="--base /root/base --data /root/data/corpus/code /root/data/corpus/prose --bf16 --window-codes 1024 --steps 100000 --warmup 40 --lora-r 8 --encoder-layers 1 --encoder-latent-size 192 --workers 6 --max-seconds $1"
python -m zip2zip train $A --batch-size 16 --out /root/one 2>&1 | tail -1 > $OUT/one.json; cat $OUT/one.json
accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision bf16 --dynamo_backend no -m zip2zip train $A --batch-size 16 --out /root/two 2>&1 | grep '"processes"' | tail -1 > $OUT/two.json; cat $OUT/two.json
