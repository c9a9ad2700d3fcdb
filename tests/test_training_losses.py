"""The extra loss terms of `zip2zip train` (`zip2zip.training.losses`): the adapter KL and the
distillation KL against their definitions, and training with each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zip2zip as z
from tiny_models import log_of, train_args
from zip2zip.cli import main
from zip2zip.errors import TrainingError
from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.modeling.loss_terms import LossInputs
from zip2zip.training.data import (
    CodeWindows,
    Document,
    code_lengths,
    collate_windows,
    tokenize_documents,
)
from zip2zip.training.losses import AdapterKL, DistillKL


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
