"""The conditional head (`zip2zip.nn.conditional`): its log-probabilities against a plain
definition, its training loss against its logits, and the model paths that use it."""

from __future__ import annotations

import math

import pytest
import torch

from tiny_models import TEXTS, tiny
from zip2zip.errors import ConfigError
from zip2zip.generation.fields import codebook_fields
from zip2zip.nn.conditional import ConditionalHead, group_tables, grouped_log_probs, target_correction

H, V, E = 8, 12, 6


def _setting(seed: int = 0, trained: bool = True):
    torch.manual_seed(seed)
    head = ConditionalHead(H, 16)
    if trained:  # a head just added is the identity: give it a correction to compute
        torch.nn.init.normal_(head.project_out.weight, std=0.5)
        torch.nn.init.normal_(head.project_out.bias, std=0.5)
    lm_head = torch.randn(V, H)
    rows = torch.randn(1, E, H)
    # Groups of several sizes: first ids 3, 3, 3, 5, 7 and 5 (slot 5 not installed at position 0).
    first = torch.tensor([[3, 3, 3, 5, 7, 5]])
    hidden = torch.randn(4, H)
    installed = torch.tensor([5, 6, 6, 0])
    return head, lm_head, rows, first, hidden, installed


@torch.no_grad()
def _by_definition(head, lm_head, rows, first, hidden, installed) -> torch.Tensor:
    """log p(c) = log p_flat(group f) + log softmax over the group of q_f . row, written out one
    code at a time."""
    out = torch.full((hidden.shape[0], V + E), -math.inf, dtype=torch.float64)
    for n in range(hidden.shape[0]):
        h = hidden[n].double()
        members = {f: [j for j in range(int(installed[n])) if int(first[0, j]) == f] for f in range(V)}
        flat = {("base", t): float(h @ lm_head[t].double()) for t in range(V)}
        flat.update({("hyper", j): float(h @ rows[0, j].double()) for j in range(int(installed[n]))})
        total = math.log(sum(math.exp(v) for v in flat.values()))
        for f in range(V):
            group = [("base", f)] + [("hyper", j) for j in members[f]]
            log_group = math.log(sum(math.exp(flat[c]) for c in group)) - total
            q = head.query(hidden[n : n + 1], lm_head[f : f + 1])[0].double()
            scores = {("base", f): float(q @ lm_head[f].double())}
            scores.update({("hyper", j): float(q @ rows[0, j].double()) for j in members[f]})
            within = math.log(sum(math.exp(v) for v in scores.values()))
            for kind, index in group:
                column = index if kind == "base" else V + index
                out[n, column] = log_group + scores[(kind, index)] - within
    return out


def _grouped(head, lm_head, rows, first, hidden, installed) -> torch.Tensor:
    base = hidden @ lm_head.T
    flat = (hidden @ rows[0].T).masked_fill(torch.arange(E)[None, :] >= installed[:, None], -math.inf)
    with torch.no_grad():
        return grouped_log_probs(head, hidden, base, flat, group_tables(head, rows, lm_head, first))


def test_grouped_log_probs_follow_the_definition():
    setting = _setting()
    got = _grouped(*setting).double()
    want = _by_definition(*setting)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    assert torch.allclose(got[finite], want[finite], atol=1e-4)
    assert torch.allclose(got.logsumexp(-1), torch.zeros(4, dtype=torch.float64), atol=1e-5)  # normalised


def test_a_new_head_keeps_the_flat_distribution():
    head, lm_head, rows, first, hidden, installed = _setting(trained=False)
    got = _grouped(head, lm_head, rows, first, hidden, installed)
    flat = torch.cat([hidden @ lm_head.T, hidden @ rows[0].T], 1)
    flat = flat.masked_fill(torch.arange(V + E)[None, :] >= V + installed[:, None], -math.inf)
    assert torch.allclose(got, flat.log_softmax(-1), atol=1e-5)


def test_the_training_correction_is_the_difference_of_the_two_losses():
    head, lm_head, rows, first, hidden, installed = _setting()
    grouped = _grouped(head, lm_head, rows, first, hidden, installed)
    flat = torch.cat([hidden @ lm_head.T, hidden @ rows[0].T], 1)
    flat = flat.masked_fill(torch.arange(V + E)[None, :] >= V + installed[:, None], -math.inf).log_softmax(-1)
    targets = torch.tensor([V + 1, 3, V + 5, 9])  # a hypertoken, a grouped base id, another group, a lone id
    with torch.no_grad():
        correction = target_correction(head, hidden[None], lm_head, rows, first, targets[None], installed[None], V)[0]
    picked = torch.arange(4)
    assert torch.allclose(grouped[picked, targets], flat[picked, targets] + correction, atol=1e-5)
    assert correction[3] == 0  # no hypertoken starts with 9
    assert bool((correction[:3] != 0).all())


@pytest.fixture(scope="module")
def conditional_model(saved):
    folder, tok, plain = saved
    from zip2zip.modeling import Zip2ZipForCausalLM

    model = Zip2ZipForCausalLM.from_pretrained(folder).eval()
    model.add_conditional_head(24)
    torch.manual_seed(5)
    assert model.hyper.conditional is not None
    torch.nn.init.normal_(model.hyper.conditional.project_out.weight, std=0.3)
    return tok, model, plain


def _batch(tok):
    tok.padding_side = "left"
    return tok([TEXTS[0], TEXTS[1] * 2], return_tensors="pt", padding=True, add_special_tokens=False)


def test_the_fused_loss_is_the_loss_of_the_logits(conditional_model):
    tok, model, _ = conditional_model
    batch = _batch(tok)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        from_logits = model(**batch, labels=labels).loss
        fused = model(**batch, labels=labels, return_logits=False).loss
    assert torch.allclose(fused, from_logits, atol=1e-4)


def test_gradients_reach_the_head(conditional_model):
    tok, model, _ = conditional_model
    batch = _batch(tok)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.zero_grad()
    model(**batch, labels=labels, return_logits=False).loss.backward()
    head = model.hyper.conditional
    assert head is not None
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
    model.zero_grad()


def test_a_new_head_changes_nothing(saved):
    folder, tok, plain = saved
    from zip2zip.modeling import Zip2ZipForCausalLM

    model = Zip2ZipForCausalLM.from_pretrained(folder).eval().add_conditional_head(16)
    batch = _batch(tok)
    with torch.no_grad():
        got = model(**batch).logits.log_softmax(-1)
        want = plain(**batch).logits.log_softmax(-1)
    assert torch.allclose(got, want, atol=1e-5)


def test_generate_writes_the_argmax_of_the_forward_log_probs(conditional_model):
    tok, model, plain = conditional_model
    batch = _batch(tok)
    width = batch["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=20, do_sample=False)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(out[:, width:])], 1)
        fields = codebook_fields(model.codebook_config(), out, mask)
        log_probs = model(input_ids=out, attention_mask=mask, **fields).logits
        flat = plain.generate(**batch, max_new_tokens=20, do_sample=False)
    for row in range(out.shape[0]):
        for step in range(out.shape[1] - width):
            assert int(out[row, width + step]) == int(log_probs[row, width + step - 1].argmax())
    assert not torch.equal(out, flat)  # the head changed the tiny model's choices
    assert int((out[:, width:] >= tok.vocab_size).sum()) > 0  # and it writes hypertokens


def test_the_head_saves_and_loads(conditional_model, tmp_path):
    tok, model, _ = conditional_model
    from zip2zip.modeling import Zip2ZipForCausalLM

    model.save_pretrained(tmp_path / "m")
    loaded = Zip2ZipForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert loaded.config.conditional_head_size == 24
    batch = _batch(tok)
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)


@pytest.mark.parametrize("valve", [False, True])
def test_the_static_loop_writes_what_generate_writes(conditional_model, valve):
    from zip2zip.generation.static import StaticGenerator

    tok, model, _ = conditional_model
    batch = _batch(tok)
    width = batch["input_ids"].shape[1]
    options = dict(do_sample=False, output_hypertokens=not valve, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        expected = model.generate(**batch, max_new_tokens=24, **options)
    generator = StaticGenerator.for_zip2zip(model, tok, batch_size=2, max_cache_len=160, output_hypertokens=not valve)
    generator.stop_ids = frozenset()
    rows = [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], batch["attention_mask"])]
    out = generator.generate(rows, max_new_base_tokens=24)
    for row in range(2):
        new = expected[row, width:].tolist()
        assert len(out.tokens[row]) >= 8 and out.tokens[row] == new[: len(out.tokens[row])]
    if not valve:
        assert max(max(t) for t in out.tokens) >= tok.vocab_size  # hypertokens, scored by the head
    # The head's tables, kept slot by slot as entries were made (prompt and generated), are
    # those of every installed slot computed afresh (but the entry the last code made, which the
    # loop would have encoded in the step it did not take).
    assert generator.batch is not None
    installed = torch.as_tensor(generator.batch.installed)
    assert int(installed.min()) > max(len(r) for r in rows) // 4  # entries made while generating too
    kept = generator._tables()
    fresh = group_tables(
        model.hyper.conditional,
        generator.output_rows[:, : generator.slots],
        generator.head,
        generator.entry_phrases[:, : generator.slots, 0],
    )
    for row in range(2):
        used = slice(0, int(installed[row]) - 1)
        for name, a, b in zip(kept._fields, kept, fresh):
            torch.testing.assert_close(a[row, used], b[row, used], msg=name)


@pytest.mark.parametrize(("valve", "source"), [(False, "lookup"), (True, "both")])
def test_speculation_writes_what_generate_writes(conditional_model, valve, source):
    from zip2zip.generation.speculative import speculative_generate

    tok, model, _ = conditional_model
    tok.padding_side = "left"
    batch = tok(
        [TEXTS[0], TEXTS[1] * 2, "x = 1\n" * 6 + "y = 2\n"], return_tensors="pt", padding=True, add_special_tokens=False
    )
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=40, do_sample=False, output_hypertokens=not valve)
    out = speculative_generate(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=40,
        output_hypertokens=not valve,
        draft_source=source,
    )
    assert torch.equal(out.sequences, plain)
    assert out.stats.accepted > 0


def test_what_does_not_run_it_says_so(conditional_model, saved):
    tok, model, _ = conditional_model
    from zip2zip.modeling import Zip2ZipForCausalLM

    with pytest.raises(ConfigError, match="already has a conditional head"):
        model.add_conditional_head(8)
    gemma = Zip2ZipForCausalLM.from_base(tiny("gemma3_text", vocab=tok.vocab_size), tok)
    with pytest.raises(ConfigError, match="soft-capping"):
        gemma.add_conditional_head(8)
    with pytest.raises(ConfigError, match="positive"):
        Zip2ZipForCausalLM.from_pretrained(saved[0]).add_conditional_head(0)
