# A randomly initialised model of SmolLM2-135M's shape, saved with SmolLM2's tokenizer:
#   python benchmarks/smollm2_shaped_base.py TOKENIZER_FOLDER OUT_FOLDER
# (TOKENIZER_FOLDER: a tokenizer folder, or a zip2zip folder, whose base tokenizer is taken)
# Enough to measure training throughput without carrying the GGUF.
import sys

from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from zip2zip.folders import base_tokenizer_folder
from zip2zip.shapes import LLAMA_SHAPES

LlamaForCausalLM(LlamaConfig(**LLAMA_SHAPES["135m"])).save_pretrained(sys.argv[2])
AutoTokenizer.from_pretrained(base_tokenizer_folder(sys.argv[1])).save_pretrained(sys.argv[2])
