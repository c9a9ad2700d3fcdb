"""Training under the canonical mask (``zip2zip train --canonical``): the fused loss with
``canonical_outputs`` on is the cross-entropy of the masked distribution (flat or with a
conditional head), its gradients are those of the masked logits' loss, and the distillation
term conditions teacher and student on what canonical encoding may write next."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_training_losses import naive_distill_kl
from tiny_models import TEXTS, log_of, train_args
from zip2zip.cli import main
from zip2zip.modeling import Zip2ZipForCausalLM
from zip2zip.modeling.canonical import allowed_log_mass, non_canonical_mask
from zip2zip.training.data import CodeWindows, Document, collate_windows, tokenize_documents
from zip2zip.training.losses import DistillKL


def _model(folder, conditional: bool):
    model = Zip2ZipForCausalLM.from_pretrained(folder).eval()
    if conditional:
        model.add_conditional_head(24)
        torch.manual_seed(5)
        assert model.hyper.conditional is not None
        torch.nn.init.normal_(model.hyper.conditional.project_out.weight, std=0.3)
    return model


def _batch(tok):
    tok.padding_side = "left"
    batch = tok([TEXTS[0], TEXTS[1] * 2], return_tensors="pt", padding=True, add_special_tokens=False)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    return batch


def _masked_loss_by_hand(model, batch):
    """The cross-entropy of the flat (or conditional) logits renormalised over the codes
    `non_canonical_mask` allows, target by target."""
    vocab = model.config.vocab_size
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.double()
    excluded = non_canonical_mask(
        batch["input_ids"], batch["codebook"], batch["codebook_lengths"], batch["installed"], vocab
    )
    total, count, removed = 0.0, 0, 0
    for row in range(logits.shape[0]):
        for t in range(logits.shape[1] - 1):
            target = int(batch["labels"][row, t + 1])
            if target == -100 or target >= vocab + int(batch["installed"][row, t]):
                continue
            out = excluded[row, t]
            assert not out[target]  # a canonical stream's next code is always allowed
            scores = logits[row, t].clone()
            scores[: out.shape[0]][out] = -float("inf")
            removed += int(out.sum())
            total -= float(scores[target] - scores.logsumexp(0))
            count += 1
    assert removed > 0  # the batch has codes whose phrase has children
    return total / count


@pytest.mark.parametrize("conditional", [False, True], ids=["flat", "conditional-head"])
def test_the_canonical_loss_is_the_masked_distributions(saved, conditional):
    folder, tok, _ = saved
    model = _model(folder, conditional)
    batch = _batch(tok)
    with torch.no_grad():
        flat = float(model(**batch, return_logits=False).loss)
    want = _masked_loss_by_hand(model, batch)
    model.config.canonical_outputs = True
    with torch.no_grad():
        fused = float(model(**batch, return_logits=False).loss)
        from_logits = float(model(**batch).loss)
    assert fused == pytest.approx(want, abs=1e-4) and from_logits == pytest.approx(want, abs=1e-4)
    assert flat - fused > 1e-5  # the model had put (a little: it is near uniform) probability on them


def test_the_canonical_loss_has_the_masked_logits_gradients(saved):
    folder, tok, _ = saved
    model = _model(folder, conditional=True)
    model.config.canonical_outputs = True
    batch = _batch(tok)
    grads = []
    for fused in (True, False):
        model.zero_grad()
        model(**batch, return_logits=not fused).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any(n.startswith("hyper.output_encoder") for n in grads[0])
    assert any(n.startswith("hyper.conditional") for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-3, atol=1e-5, msg=name)
    model.zero_grad()


def test_allowed_log_mass_is_zero_with_nothing_excluded_and_negative_otherwise():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
    none = torch.zeros(1, 4, dtype=torch.bool)
    some = torch.tensor([[False, True, False, False]])
    assert float(allowed_log_mass(logits, none)[0]) == 0.0
    p = logits.softmax(-1)[0]
    assert float(allowed_log_mass(logits, some)[0]) == pytest.approx(float(torch.log1p(-p[1])), abs=1e-6)


def _child_ends(batch, row: int, t: int, vocab: int) -> set[int]:
    """The base ids that end a child of code ``t``'s phrase (an installed entry of one more id
    that starts with it), by searching the codebook."""
    book, lengths = batch["codebook"][row].tolist(), batch["codebook_lengths"][row].tolist()
    code = int(batch["input_ids"][row, t])
    phrase = [code] if code < vocab else book[code - vocab][: lengths[code - vocab]]
    return {
        book[s][len(phrase)]
        for s in range(int(batch["installed"][row, t]))
        if lengths[s] == len(phrase) + 1 and book[s][: len(phrase)] == phrase
    }


def naive_canonical_distill_kl(model, batch, top):
    """The canonical distillation term the long way: the teacher's ``top`` tokens with the ids
    that end a child of the code just read (found by searching the codebook) removed, then
    renormalised (a position with none left counts as 0), against the marginal of the model's
    own masked distribution (forward's logits with ``canonical_outputs`` on)."""
    vocab = model.config.vocab_size
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "codebook", "codebook_lengths", "installed")}
        student = model(**inputs).logits.float().log_softmax(-1).exp()
        with model.base.disable_adapter():
            teacher = model.base(input_ids=batch["window_ids"], attention_mask=batch["window_mask"]).logits.float()
    total, count, dropped = 0.0, 0, 0
    for row in range(batch["input_ids"].shape[0]):
        firsts = batch["codebook"][row, :, 0].tolist()
        for t in range(batch["input_ids"].shape[1] - 1):
            target = int(batch["labels"][row, t + 1])
            if target == -100 or target >= vocab + int(batch["installed"][row, t]):
                continue
            ends = _child_ends(batch, row, t, vocab)
            values, ids = teacher[row, int(batch["code_ends"][row, t])].topk(top)
            p = values.softmax(-1) * ~torch.isin(ids, torch.tensor(sorted(ends), dtype=ids.dtype))
            dropped += int((p == 0).sum())
            count += 1
            if float(p.sum()) == 0:
                continue
            p = p / p.sum()
            q = student[row, t, :vocab].clone()
            for slot, first in enumerate(firsts):
                q[first] += student[row, t, vocab + slot]
            keep = p > 0
            total += float((p[keep] * (p[keep].log() - q[ids][keep].log())).sum())
    assert dropped > 0  # some teacher tokens were ones the code stream cannot continue with
    return total / count


def test_the_canonical_distill_term_equals_its_definition(workspace, tok):
    windows = CodeWindows(
        tok,
        *tokenize_documents(tok, [Document(text=(workspace / "data" / "train.txt").read_text())]),
        window_codes=48,
        teacher_ids=True,
    )
    batch = collate_windows([windows[0], windows[len(windows) - 1]])
    batch.pop("base_tokens")
    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok).add_lora(r=4)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    core = {k: v for k, v in batch.items() if k not in ("window_ids", "window_mask", "code_ends")}
    # A random base spreads its probability over the whole vocabulary: point the LM-head rows of
    # the ids that end children along the mean hidden state, so that the teacher (and the
    # student, which shares the head) put much of theirs where the mask takes it away.
    vocab = tok.vocab_size
    ends = sorted(
        {
            i
            for row in range(2)
            for t in range(batch["input_ids"].shape[1] - 1)
            for i in _child_ends(batch, row, t, vocab)
        }
    )
    with torch.no_grad():
        states = model.base.get_decoder()(input_ids=batch["window_ids"]).last_hidden_state.mean((0, 1))
        model.base.get_output_embeddings().weight[ends] = states * (6.0 / float(states @ states))
    top = 64
    term = DistillKL(batch["window_ids"], batch["window_mask"], batch["code_ends"], weight=1.0, top=top)
    plain = float(model(**core, loss_terms=[term], return_logits=False).loss_terms["distill_kl"])
    assert plain == pytest.approx(naive_distill_kl(model, batch, top=top), rel=1e-4)
    model.config.canonical_outputs = True
    output = model(**core, loss_terms=[term], return_logits=False)
    canonical = float(output.loss_terms["distill_kl"])
    assert canonical == pytest.approx(naive_canonical_distill_kl(model, batch, top=top), rel=1e-4)
    assert abs(canonical - plain) > 5e-4 * plain  # five times the tolerance: the two are told apart
    # The term gives forward the code loss's canonical correction from its own logits: the same
    # loss and gradients as forward computing the correction itself.
    assert term.canonical_mass is not None and float(term.canonical_mass.detach()) < 0

    class Unshared(DistillKL):
        shares_canonical_mass = False

    apart = Unshared(batch["window_ids"], batch["window_mask"], batch["code_ends"], weight=1.0, top=top)
    grads = []
    for chosen in (term, apart):
        model.zero_grad()
        out = model(**core, loss_terms=[chosen], return_logits=False)
        out.loss.backward()
        grads.append(
            (float(out.loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    without = float(model(**core, return_logits=False).loss.detach())
    assert grads[0][0] == pytest.approx(without + canonical, rel=1e-5)
    assert any("lora_" in n and g.abs().sum() > 0 for n, g in grads[0][1].items())
    for name, grad in grads[0][1].items():
        torch.testing.assert_close(grad, grads[1][1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_train_canonical_saves_the_flag_and_keeps_it(workspace, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    args = ("--steps", "2", "--canonical", "--distill", "1.0", "--distill-top", "16")
    assert main(train_args(workspace, first, *args)) == 0
    log = log_of(first)
    assert [e["step"] for e in log] == [1, 2] and all(np.isfinite(e["loss"]) and e["distill_kl"] > 0 for e in log)
    assert json.loads((first / "train_config.json").read_text())["canonical"] is True
    assert Zip2ZipForCausalLM.from_pretrained(first).config.canonical_outputs
    assert main(train_args(workspace, again, "--steps", "1", "--init", str(first))) == 0
    assert json.loads((again / "train_config.json").read_text())["canonical"] is True
    assert Zip2ZipForCausalLM.from_pretrained(again).config.canonical_outputs
