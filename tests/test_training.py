"""`zip2zip train` on the CPU with a tiny model: the loss falls, runs resume and continue exactly,
DDP and FSDP2 on two processes equal one process, checkpoints and saved folders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import zip2zip as z
from tiny_models import TEXTS, log_of, tiny, train_args
from zip2zip.cli import main
from zip2zip.modeling import Zip2ZipForCausalLM


def test_training_lowers_the_loss_and_the_run_loads_and_generates(workspace, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "8")) == 0
    log = log_of(out)
    assert [entry["step"] for entry in log] == list(range(1, 9))
    assert log[-1]["loss"] < log[0]["loss"] - 0.2, [entry["loss"] for entry in log]
    assert log[-1]["base_tokens"] > log[-1]["codes"]  # windows are compressed
    model = Zip2ZipForCausalLM.from_pretrained(out).eval()
    tokenizer = z.Zip2ZipTokenizer.from_pretrained(out)
    assert model.has_adapter and tokenizer.config.max_codebook_size == 256
    batch = tokenizer(["def f(x):"], return_tensors="pt", padding=True)
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert generated.shape == (1, batch["input_ids"].shape[1] + 5)
    # A second run into the same folder is refused instead of mixing logs.
    assert main(train_args(workspace, out, "--steps", "2")) == 2


@pytest.mark.parametrize(
    "order",
    [[], ["--document-windows", "--group-by-length"], ["--conditional-head", "16"], ["--canonical"]],
    ids=["shuffled", "grouped", "conditional-head", "canonical"],
)
def test_resume_continues_the_same_loss_curve(workspace, tmp_path, order):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(train_args(workspace, whole, "--steps", "6", "--save-every", "3", *order)) == 0
    # An interrupted run: what the first three steps left behind, then --resume.
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "step-3", resumed / "checkpoints" / "step-3")
    (resumed / "train_log.jsonl").write_text(
        "".join(line + "\n" for line in (whole / "train_log.jsonl").read_text().splitlines()[:3])
    )
    assert main(train_args(workspace, resumed, "--steps", "6", "--save-every", "3", "--resume", *order)) == 0
    expected, got = log_of(whole), log_of(resumed)
    assert [e["step"] for e in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(expected[3:], got[3:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["lr"] == b["lr"]
        assert (a["codes"], a["base_tokens"]) == (b["codes"], b["base_tokens"])  # counted from the start
    ended = [Zip2ZipForCausalLM.from_pretrained(folder).hyper for folder in (whole, resumed)]
    assert torch.equal(ended[0].output_encoder.project_out.weight, ended[1].output_encoder.project_out.weight)
    if "--conditional-head" in order:
        heads = [hyper.conditional for hyper in ended]
        assert heads[0] is not None and heads[1] is not None
        assert heads[0].project_out.weight.abs().max() > 0  # zero at the start: it trained
        assert torch.equal(heads[0].project_out.weight, heads[1].project_out.weight)
    # The checkpoint holds the trained tensors only (LoRA and encoders), not the frozen base.
    from safetensors import safe_open

    with safe_open(str(whole / "checkpoints" / "step-3" / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert keys and all("lora_" in k or k.startswith("hyper.") for k in keys)
    assert any("lora_" in k for k in keys) and any(k.startswith("hyper.") for k in keys)


def test_a_checkpoint_without_a_trained_tensor_does_not_resume(workspace, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "4", "--save-every", "2")) == 0
    shutil.rmtree(out / "checkpoints" / "step-4")
    weights_file = out / "checkpoints" / "step-2" / "model.safetensors"
    weights = load_file(weights_file)
    dropped = sorted(k for k in weights if k.startswith("hyper."))[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, weights_file)
    assert main(train_args(workspace, out, "--steps", "4", "--resume")) == 2
    assert f"lacks 1 trained tensors ({dropped}" in capsys.readouterr().err
    weights_file.write_bytes(weights_file.read_bytes()[:100])  # a checkpoint cut short
    assert main(train_args(workspace, out, "--steps", "4", "--resume")) == 2
    assert "not a valid safetensors file" in capsys.readouterr().err


def test_init_continues_from_a_saved_model(workspace, tmp_path, capsys):
    """--init starts from a saved model's adapter and encoders and takes its settings: with a
    negligible learning rate the continued run ends with the saved weights (a fresh start has
    zero output projections and zero LoRA B matrices)."""
    first, continued = tmp_path / "first", tmp_path / "continued"
    assert main(train_args(workspace, first, "--steps", "8")) == 0
    assert (
        main(
            train_args(
                workspace,
                continued,
                "--steps",
                "1",
                "--lr",
                "1e-12",
                "--encoder-lr",
                "1e-12",
                "--lora-r",
                "8",
                "--max-codebook-size",
                "512",
                "--init",
                str(first),
            )
        )
        == 0
    )
    settings = json.loads((continued / "train_config.json").read_text())
    assert (settings["lora_r"], settings["max_codebook_size"], settings["init"]) == (4, 256, str(first))
    saved, again = Zip2ZipForCausalLM.from_pretrained(first), Zip2ZipForCausalLM.from_pretrained(continued)
    trained = saved.hyper.output_encoder.project_out.weight
    assert trained.abs().max() > 1e-3  # zero when untrained
    torch.testing.assert_close(again.hyper.output_encoder.project_out.weight, trained, rtol=0, atol=1e-7)
    lora = [n for n, _ in saved.base.named_parameters() if "lora_B" in n][0]
    assert dict(saved.base.named_parameters())[lora].abs().max() > 1e-3
    torch.testing.assert_close(
        dict(again.base.named_parameters())[lora], dict(saved.base.named_parameters())[lora], rtol=0, atol=1e-7
    )
    capsys.readouterr()
    assert main(train_args(workspace, tmp_path / "nowhere", "--init", str(tmp_path / "missing"))) == 2
    assert "missing" in capsys.readouterr().err


def test_grow_encoder_layers_continues_with_deeper_encoders(workspace, tmp_path, capsys):
    """--init with --grow-encoder-layers: the continued model has deeper encoders whose new
    layers start as the identity (with a negligible learning rate its logits are the saved
    model's), it saves and reloads with the new depth, and its new layers train."""
    first, grown, trained = tmp_path / "first", tmp_path / "grown", tmp_path / "trained"
    assert main(train_args(workspace, first, "--steps", "6", "--encoder-layers", "1")) == 0
    still = ("--lr", "1e-12", "--encoder-lr", "1e-12")
    grow = ("--init", str(first), "--grow-encoder-layers", "3")
    assert main(train_args(workspace, grown, "--steps", "1", *still, *grow)) == 0
    assert main(train_args(workspace, trained, "--steps", "4", *grow)) == 0
    assert json.loads((grown / "train_config.json").read_text())["encoder_layers"] == 3
    saved, again, moved = (Zip2ZipForCausalLM.from_pretrained(f).eval() for f in (first, grown, trained))
    assert (saved.config.encoder_layers, again.config.encoder_layers) == (1, 3)
    assert again.hyper.output_encoder.num_layers == again.hyper.input_encoder.num_layers == 3
    tok = z.Zip2ZipTokenizer.from_pretrained(first)
    batch = tok([TEXTS[0]], return_tensors="pt")
    assert int(batch["codebook_lengths"].gt(0).sum()) > 3  # the text creates entries to encode
    with torch.no_grad():
        before, grown_logits, after = (m(**batch).logits for m in (saved, again, moved))
    torch.testing.assert_close(grown_logits, before, rtol=0, atol=1e-6)  # -inf where nothing is installed
    offered = torch.isfinite(before)
    assert (after[offered] - before[offered]).abs().max() > 1e-4
    new_layer = dict(moved.hyper.output_encoder.named_parameters())["layers.layers.2.linear2.weight"]
    assert new_layer.abs().max() > 0  # zero at the start: it trained
    capsys.readouterr()
    assert main(train_args(workspace, tmp_path / "x", "--init", str(grown), "--grow-encoder-layers", "2")) == 2
    assert "already have 3 layers" in capsys.readouterr().err
    assert main(train_args(workspace, tmp_path / "y", "--grow-encoder-layers", "2")) == 2
    assert "without --init" in capsys.readouterr().err


def test_grow_lora_rank_continues_with_a_wider_adapter(workspace, tmp_path, capsys):
    """--init with --grow-lora-rank: the continued model's adapter has the new rank and an alpha
    that keeps its scale, its logits are the saved model's before training, it saves and
    reloads with the new rank, and the new directions train."""
    first, grown, trained = tmp_path / "first", tmp_path / "grown", tmp_path / "trained"
    assert main(train_args(workspace, first, "--steps", "6")) == 0  # rank 4, alpha 8
    still = ("--lr", "1e-12", "--encoder-lr", "1e-12")
    grow = ("--init", str(first), "--grow-lora-rank", "12")
    assert main(train_args(workspace, grown, "--steps", "1", *still, *grow)) == 0
    assert main(train_args(workspace, trained, "--steps", "4", *grow)) == 0
    adapter = json.loads((grown / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (12, 24)
    assert json.loads((grown / "train_config.json").read_text())["lora_r"] == 12
    saved, again, moved = (Zip2ZipForCausalLM.from_pretrained(f).eval() for f in (first, grown, trained))
    b_of = {name: p for name, p in moved.base.named_parameters() if "lora_B" in name}
    assert b_of and all(p.shape[1] == 12 for p in b_of.values())
    tok = z.Zip2ZipTokenizer.from_pretrained(first)
    batch = tok([TEXTS[0]], return_tensors="pt")
    with torch.no_grad():
        before, grown_logits, after = (m(**batch).logits for m in (saved, again, moved))
    torch.testing.assert_close(grown_logits, before, rtol=0, atol=1e-5)  # -inf where nothing is installed
    offered = torch.isfinite(before)
    assert (after[offered] - before[offered]).abs().max() > 1e-4
    assert max(float(p[:, 4:].abs().max()) for p in b_of.values()) > 0  # zero at the start: they trained
    capsys.readouterr()
    assert main(train_args(workspace, tmp_path / "x", "--init", str(grown), "--grow-lora-rank", "8")) == 2
    assert "rank-12 LoRA adapter to rank 8" in capsys.readouterr().err
    assert main(train_args(workspace, tmp_path / "y", "--grow-lora-rank", "8")) == 2
    assert "without --init" in capsys.readouterr().err


def test_conditional_head_is_added_trained_and_kept(workspace, tmp_path):
    """--conditional-head: a head added to a saved model starts as the identity (the continued
    model's log-probabilities are the saved model's), trains, and a later --init keeps it."""
    first, added, trained, again = (tmp_path / n for n in ("first", "added", "trained", "again"))
    assert main(train_args(workspace, first, "--steps", "4")) == 0
    still = ("--lr", "1e-12", "--encoder-lr", "1e-12")
    assert (
        main(train_args(workspace, added, "--steps", "1", *still, "--init", str(first), "--conditional-head", "16"))
        == 0
    )
    assert main(train_args(workspace, trained, "--steps", "4", "--init", str(first), "--conditional-head", "16")) == 0
    assert main(train_args(workspace, again, "--steps", "1", "--init", str(trained))) == 0
    assert json.loads((added / "train_config.json").read_text())["conditional_head"] == 16
    assert json.loads((again / "train_config.json").read_text())["conditional_head"] == 16
    saved, with_head, moved = (Zip2ZipForCausalLM.from_pretrained(f).eval() for f in (first, added, trained))
    assert saved.hyper.conditional is None and moved.config.conditional_head_size == 16
    assert moved.hyper.conditional is not None and moved.hyper.conditional.project_out.weight.abs().max() > 0
    tok = z.Zip2ZipTokenizer.from_pretrained(first)
    batch = tok([TEXTS[0]], return_tensors="pt")
    with torch.no_grad():
        before, kept = (m(**batch).logits.log_softmax(-1) for m in (saved, with_head))
    torch.testing.assert_close(kept, before, rtol=0, atol=1e-5)


def test_read_back_answers_trains_resumes_and_is_refused_where_it_cannot_apply(workspace, tmp_path, capsys):
    """--read-back-answers: chat answers read as base ids (with the distillation teacher, whose
    ends follow the positions), recorded, resumed exactly; a share outside [0, 1] and the
    canonical mask are refused by name."""
    chats = tmp_path / "chats.jsonl"
    answer = "def add(a, b):\n    return a + b\n" * 3
    chats.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"Write add {i}."}, {"role": "assistant", "content": answer}]}
            )
            + "\n"
            for i in range(6)
        )
    )
    data = ("--data", str(workspace / "data"), str(chats))
    settings = (*data, "--read-back-answers", "1.0", "--distill", "1.0", "--distill-top", "8", "--document-windows")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(train_args(workspace, whole, "--steps", "4", "--save-every", "2", *settings)) == 0
    assert json.loads((whole / "train_config.json").read_text())["read_back_answers"] == 1.0
    assert all(np.isfinite(e["loss"]) and e["distill_kl"] >= 0 for e in log_of(whole))
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "step-2", resumed / "checkpoints" / "step-2")
    (resumed / "train_log.jsonl").write_text(
        "".join(line + "\n" for line in (whole / "train_log.jsonl").read_text().splitlines()[:2])
    )
    assert main(train_args(workspace, resumed, "--steps", "4", "--save-every", "2", "--resume", *settings)) == 0
    for a, b in zip(log_of(whole)[2:], log_of(resumed)[2:], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["codes"] == b["codes"]
    # The same windows read as codes throughout are fewer positions: the answers were read back.
    plain = tmp_path / "plain"
    assert main(train_args(workspace, plain, "--steps", "4", *data, "--distill", "1.0", "--document-windows")) == 0
    assert log_of(plain)[-1]["codes"] < log_of(whole)[-1]["codes"]
    assert log_of(plain)[-1]["base_tokens"] == log_of(whole)[-1]["base_tokens"]
    capsys.readouterr()
    assert main(train_args(workspace, tmp_path / "bad", "--steps", "1", *data, "--read-back-answers", "1.5")) == 2
    assert "read_back_answers=1.5" in capsys.readouterr().err
    assert (
        main(train_args(workspace, tmp_path / "mask", "--steps", "1", *data, "--read-back-answers", "1", "--canonical"))
        == 2
    )
    assert "canonical mask needs codes" in capsys.readouterr().err


@pytest.mark.parametrize("rslora", [False, True])
def test_a_grown_lora_adapter_computes_what_it_did(rslora):
    """`grow_lora_rank` on a peft model: the same logits with a trained (non-zero) adapter, the
    old directions kept, the scale kept (alpha by r/r_old, or its square root with rsLoRA); the
    same rank is a no-op, a lower one and a DoRA adapter are refused."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    from zip2zip.modeling.lora import grow_lora_rank

    def scales_of(model):
        return [m.scaling["default"] for m in model.modules() if isinstance(m, LoraLayer)]

    torch.manual_seed(0)
    model = get_peft_model(
        tiny("llama"), LoraConfig(r=2, lora_alpha=4, use_rslora=rslora, target_modules=["q_proj", "down_proj"])
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    a_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    scales = scales_of(model)
    assert grow_lora_rank(model, 8) == 2 * model.config.num_hidden_layers
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=1e-5)
    for name, p in model.named_parameters():
        if "lora_A" in name:
            assert p.shape[0] == 8 and p.requires_grad
            torch.testing.assert_close(p[:2], a_before[name], rtol=0, atol=0)
            assert p[2:].abs().min() > 0  # initialised, not zero: gradients reach B's new columns
    assert model.peft_config["default"].r == 8
    assert model.peft_config["default"].lora_alpha == (8 if rslora else 16)
    assert scales_of(model) == scales
    assert grow_lora_rank(model, 8) == 0
    with pytest.raises(ValueError, match="rank-8 LoRA adapter to rank 4"):
        grow_lora_rank(model, 4)
    dora = get_peft_model(tiny("llama"), LoraConfig(r=2, use_dora=True, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="DoRA"):
        grow_lora_rank(dora, 4)


def test_a_grown_encoder_computes_what_it_did():
    """`HyperEncoder.grow` appends identity layers: the same rows before training, and a
    shallower target is refused."""
    from zip2zip.nn import HyperEncoder

    torch.manual_seed(0)
    for layers in (0, 1):
        encoder = HyperEncoder(16, 4, num_layers=layers, num_heads=2, latent_size=8).eval()
        torch.nn.init.normal_(encoder.project_out.weight, std=0.5)
        rows, lengths = torch.randn(5, 4, 16), torch.tensor([1, 2, 3, 4, 2])
        before = encoder(rows, lengths)
        assert encoder.grow(layers + 2) == 2 and encoder.num_layers == layers + 2
        torch.testing.assert_close(encoder(rows, lengths), before, rtol=0, atol=1e-6)
        assert encoder.grow(layers + 2) == 0
        with pytest.raises(ValueError, match="cannot grow"):
            encoder.grow(layers)


def test_speed_settings_leave_a_bf16_step_unchanged(tok, smollm2_tokenizer):
    """`tune_for_speed` under bf16 autocast (LoRA inputs not cast to fp32 first): the same loss
    and the same gradients, bit for bit, as peft's default casting."""
    from zip2zip.training.loop import tune_for_speed

    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=smollm2_tokenizer.vocab_size), tok).add_lora(r=4)
    for name, param in model.named_parameters():  # LoRA B starts at zero: give it values
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    batch = tok(
        ["def f(x):\n    return x + x + x + x", "for i in range(10): print(i, i)"], return_tensors="pt", padding=True
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch, labels=labels, return_logits=False).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None]

    loss, grads = step()
    tune_for_speed(model, torch.device("cpu"), mixed_precision=True)
    lora_layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert lora_layers and not any(m.cast_input_dtype_enabled for m in lora_layers)
    tuned_loss, tuned_grads = step()
    assert torch.equal(loss, tuned_loss)
    assert len(grads) == len(tuned_grads) and all(torch.equal(a, b) for a, b in zip(grads, tuned_grads))


def test_a_time_limit_stops_with_a_checkpoint_that_resumes(workspace, tmp_path):
    out = tmp_path / "timed"
    assert main(train_args(workspace, out, "--steps", "4", "--max-seconds", "0.001")) == 0
    assert [e["step"] for e in log_of(out)] == [1]
    assert (out / "checkpoints" / "step-1" / "zip2zip_step.json").exists()
    assert main(train_args(workspace, out, "--steps", "4", "--resume")) == 0
    assert [e["step"] for e in log_of(out)] == [1, 2, 3, 4]


def test_train_with_document_windows(workspace, tmp_path):
    """--document-windows trains (one text file: its windows, the last one short) and is recorded."""
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "2", "--document-windows")) == 0
    assert json.loads((out / "train_config.json").read_text())["document_windows"] is True
    assert [e["step"] for e in log_of(out)] == [1, 2] and all(np.isfinite(e["loss"]) for e in log_of(out))


@pytest.mark.parametrize("extra", [[], ["--distill", "1.0", "--distill-top", "8"]], ids=["code-loss", "distill"])
def test_two_processes_equal_one_with_twice_the_batch(workspace, tmp_path, extra):
    """DDP over gloo (2 CPU processes under `accelerate launch`, batch 1 each) against one
    process with batch 2: the same windows per step and the same normalisation, so the same run;
    with --distill too (its teacher pass inside the forward, its mean over the same targets)."""
    single, double = tmp_path / "single", tmp_path / "double"
    args = train_args(workspace, single, "--steps", "4", *extra)
    args[args.index("--batch-size") + 1] = "2"
    assert main(args) == 0
    launched = train_args(workspace, double, "--steps", "4", *extra)
    launched[launched.index("--batch-size") + 1] = "1"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --multi_gpu is accelerate's multi-process launcher; with --cpu, Accelerator finds no GPU to
    # use and sets up gloo (accelerate's own --multi_cpu would go through MPI).
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        "29517",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "zip2zip",
        *launched,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = log_of(single), log_of(double)
    assert [e["step"] for e in two] == [1, 2, 3, 4]
    assert json.loads((double / "train_config.json").read_text())["batch_size"] == 1
    for a, b in zip(one, two):
        assert a["codes"] == b["codes"] and a["base_tokens"] == b["base_tokens"]  # the same windows
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    w1 = Zip2ZipForCausalLM.from_pretrained(single).hyper.output_encoder.project_out.weight
    w2 = Zip2ZipForCausalLM.from_pretrained(double).hyper.output_encoder.project_out.weight
    torch.testing.assert_close(w1, w2, rtol=1e-3, atol=1e-5)


FSDP2_ENV = {  # what `accelerate launch --use_fsdp` sets for the flags in zip2zip/train.py's docstring
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer",
    "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
    "FSDP_CPU_RAM_EFFICIENT_LOADING": "false",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
    "FSDP_OFFLOAD_PARAMS": "false",
}


def test_fsdp2_on_two_processes_equals_one_with_twice_the_batch(workspace, tmp_path):
    """FSDP2 (2 CPU processes, batch 1 each; tests/fsdp2_on_cpu.py switches accelerate to FSDP,
    which it turns on only on GPUs) against one process with batch 2: the same run, a sharded
    checkpoint, and at the end the whole weights gathered from the shards and saved."""
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    args = train_args(workspace, single, "--steps", "4")
    args[args.index("--batch-size") + 1] = "2"
    assert main(args) == 0
    launched = train_args(workspace, sharded, "--steps", "4", "--save-every", "2")
    launched[launched.index("--batch-size") + 1] = "1"
    env = {**os.environ, **FSDP2_ENV, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29519",
        os.path.join(os.path.dirname(__file__), "fsdp2_on_cpu.py"),
        *launched,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sharded_ranks = re.findall(r"^FSDP2 rank (\d+) FSDPZip2ZipForCausalLM$", result.stdout, re.MULTILINE)
    assert sorted(sharded_ranks) == ["0", "1"], result.stdout[-2000:]  # both processes sharded the model
    assert (sharded / "checkpoints" / "step-2" / "pytorch_model_fsdp_0").is_dir()  # accelerate's FSDP checkpoint
    one, two = log_of(single), log_of(sharded)
    assert [e["step"] for e in two] == [1, 2, 3, 4]
    for a, b in zip(one, two):
        assert a["codes"] == b["codes"] and a["base_tokens"] == b["base_tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    whole, gathered = Zip2ZipForCausalLM.from_pretrained(single), Zip2ZipForCausalLM.from_pretrained(sharded)
    for (name, a), (other, b) in zip(whole.named_parameters(), gathered.named_parameters()):
        assert name == other
        if "lora_B" in name or name.startswith("hyper."):
            assert b.abs().max() > 0 or a.abs().max() == 0, name  # gathered, not an empty shard
            # Adam's steps (lr 3e-2) amplify rounding differences in near-zero gradients: up to
            # 2e-4 here, against updates of up to 3e-2.
            torch.testing.assert_close(a, b, rtol=1e-3, atol=5e-4, msg=lambda message: f"{name}: {message}")


def test_fsdp2_with_bf16_reduces_gradients_and_returns_the_loss_in_fp32(monkeypatch):
    from zip2zip.training.loop import fsdp2_plugin

    monkeypatch.setattr(os, "environ", dict(os.environ))  # accelerate's plugin writes FSDP_* variables
    assert fsdp2_plugin(True) is None  # not launched with FSDP: accelerate decides
    monkeypatch.setitem(os.environ, "ACCELERATE_USE_FSDP", "true")
    monkeypatch.setitem(os.environ, "FSDP_VERSION", "2")
    assert fsdp2_plugin(False) is None
    plugin = fsdp2_plugin(True)
    policy = plugin.mixed_precision_policy
    assert plugin.fsdp_version == 2
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == policy.output_dtype == torch.float32


@pytest.mark.parametrize("tied", [False, True], ids=["two-encoders", "tied-encoders"])
def test_save_pretrained_from_a_full_state_dict_writes_the_same_files(workspace, tok, tmp_path, tied):
    """``save_pretrained(state_dict=...)``, what train saves under FSDP (the state dict that
    accelerator.get_state_dict gathers), writes the files that saving the modules writes, from
    the state dict's tensors: tied encoders once, loadable by from_pretrained."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from zip2zip.modeling import ADAPTER_FOLDER, ENCODERS_FILE

    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok, tied_encoders=tied).add_lora(r=4)
    torch.manual_seed(3)
    for name, param in model.named_parameters():  # LoRA B and the encoders' output start at zero
        if "lora_B" in name or "project_out" in name:
            torch.nn.init.normal_(param, std=0.05)
    plain, given = tmp_path / "plain", tmp_path / "given"
    model.save_pretrained(plain)
    model.save_pretrained(given, state_dict=model.state_dict())
    files = [ENCODERS_FILE, f"{ADAPTER_FOLDER}/adapter_model.safetensors"]
    for file in files:
        a, b = load_file(plain / file), load_file(given / file)
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), file
        with safe_open(plain / file, "pt") as first, safe_open(given / file, "pt") as second:
            assert first.metadata() == second.metadata()
    assert any("lora_B" in key for key in load_file(given / files[1]))
    batch = tok(["def f(x):\n    return x + x + x + x"], return_tensors="pt")
    with torch.no_grad():
        logits = [Zip2ZipForCausalLM.from_pretrained(folder).eval()(**batch).logits for folder in (plain, given)]
    assert torch.equal(logits[0], logits[1])

    # The state dict's tensors are written, not the modules': here separate copies, as FSDP
    # gathers them (tied encoders included), two of them changed.
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    encoder_key = "hyper.input_encoder.project_out.weight"
    lora_key = next(key for key in state if "lora_B" in key)
    state[encoder_key] += 1
    state[lora_key] += 1
    changed = tmp_path / "changed"
    model.save_pretrained(changed, state_dict=state)
    assert torch.equal(load_file(changed / files[0])[encoder_key.removeprefix("hyper.")], state[encoder_key])
    adapter = load_file(changed / files[1])
    assert torch.equal(adapter[lora_key.removeprefix("base.").replace(".default", "")], state[lora_key])
    loaded = Zip2ZipForCausalLM.from_pretrained(changed)
    assert torch.equal(loaded.hyper.input_encoder.project_out.weight, state[encoder_key])
    assert torch.equal(loaded.state_dict()[lora_key], state[lora_key])

    with pytest.raises(ValueError, match="hyper.input_encoder"):
        model.save_pretrained(tmp_path / "nothing", state_dict={})  # another process's share under FSDP
    assert not (tmp_path / "nothing").exists()


def test_save_pretrained_without_an_adapter_writes_the_given_state_dict(workspace, tok, tmp_path):
    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    changed = state["hyper.input_encoder.project_out.weight"] = state["hyper.input_encoder.project_out.weight"] + 1
    model.save_pretrained(tmp_path, state_dict=state)  # (transformers empties the dict)
    assert torch.equal(Zip2ZipForCausalLM.from_pretrained(tmp_path).hyper.input_encoder.project_out.weight, changed)
