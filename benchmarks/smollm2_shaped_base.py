# A randomly initialised model of SmolLM2-135M's shape, saved with SmolLM2's tokenizer:
#   python benchmarks/smollm2_shaped_base.py TOKENIZER_FOLDER OUT_FOLDER
# Enough to measure training throughput without carrying the GGUF.
import sys

from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

config = LlamaConfig(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    tie_word_embeddings=True,
    rope_theta=100000.0,
    bos_token_id=1,
    eos_token_id=2,
)
LlamaForCausalLM(config).save_pretrained(sys.argv[2])
AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])
