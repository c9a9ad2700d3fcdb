"""Tiny random models of every supported family, shared by the model, PEFT, training and
hypertoken-plumbing tests (CPU, a few thousand parameters each), and the command line of a tiny
training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

import zip2zip as z

V = 64  # the tiny models' base vocabulary
ATTENTION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": ATTENTION,
    "qwen2": ATTENTION,
    "qwen3": {**ATTENTION, "head_dim": 8},
    "mistral": ATTENTION,
    "phi3": {**ATTENTION, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1},
    "gemma3_text": {**ATTENTION, "head_dim": 8, "final_logit_softcapping": 30.0},
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=1),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
}
# Texts with repeats, so that their encodings hold hypertokens.
TEXTS = ["def f(x):\n    return x + x\n\ndef g(x):\n    return x + x + 1\n" * 2, "hello hello hello, world world"]


class CodecOnly:
    """What from_base needs of a tokenizer: its codebook config."""

    def __init__(self, config: z.CodebookConfig) -> None:
        self.config = config


def tiny(family: str, vocab: int = V, **overrides: Any) -> torch.nn.Module:
    """A random model of ``family`` (seeded: the same weights every call), in eval mode."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(family, vocab_size=vocab, **{**FAMILIES[family], **overrides})
    return AutoModelForCausalLM.from_config(config).eval()


def train_args(workspace: Path, out: Path, *extra: str) -> list[str]:
    """`zip2zip train` on the ``workspace`` fixture's tiny base and data (CPU, seconds a step)."""
    return [
        "train",
        "--base",
        str(workspace / "base"),
        "--data",
        str(workspace / "data"),
        "--out",
        str(out),
        "--max-codebook-size",
        "256",
        "--window-codes",
        "48",
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--lr",
        "3e-2",
        "--encoder-lr",
        "3e-2",
        "--lora-r",
        "4",
        "--cpu",
        *extra,
    ]


def log_of(out: Path) -> list[dict[str, Any]]:
    """The run's train_log.jsonl entries."""
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def base_answer(model: Any, tok: Any, content: str, max_new_tokens: int) -> str:
    """What the base model (adapter off) answers to one user turn on its own: greedy, the chat
    template, special tokens dropped; the reference for the base side of the checked answers."""
    prompt = tok.base.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    eos = model.generation_config.eos_token_id
    with torch.no_grad(), model.base.disable_adapter():
        out = model.base.generate(
            **prompt, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos
        )
    return str(tok.base.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True))
