"""The marginal first token (`zip2zip.modeling.marginal`): the codes kept are those starting with
the most likely next base token under the marginal, and ``generate(marginal_first_token=True)``
writes only such codes."""

from __future__ import annotations

import pytest
import torch

from tiny_models import TEXTS
from zip2zip._core import CodecState
from zip2zip.generation.fields import codebook_fields
from zip2zip.generation.speculative import speculative_generate
from zip2zip.modeling.marginal import first_ids, keep_marginal_first


def test_the_marginal_can_beat_the_best_code():
    vocab, inf = 4, float("-inf")
    # Base id 1 is the best single code (2.6); base id 2 (2.5) and hypertoken slots 0 and 1, which
    # start with it (2.5 each), have more probability together. Slot 2 starts with 1; slot 3 is
    # not installed.
    firsts = torch.tensor([[2, 2, 1, -1]])
    scores = torch.tensor([[0.0, 2.6, 2.5, 0.0, 2.5, 2.5, 0.0, inf]])
    kept = keep_marginal_first(scores, firsts, vocab)
    assert kept[0, [2, 4, 5]].tolist() == [2.5, 2.5, 2.5]  # base id 2 and its hypertokens, unchanged
    assert torch.isinf(kept[0, [0, 1, 3, 6, 7]]).all()
    # Without the hypertokens behind base id 2, base id 1 and its hypertoken (slot 2) are kept.
    alone = keep_marginal_first(scores, torch.tensor([[-1, -1, 1, -1]]), vocab)
    assert torch.isfinite(alone[0, [1, 6]]).all() and torch.isinf(alone[0, [0, 2, 3, 4, 5, 7]]).all()


def test_first_ids_mark_empty_slots():
    codebook = torch.tensor([[[5, 6, 0], [7, 0, 0], [0, 0, 0]]])
    assert first_ids(codebook, torch.tensor([[2, 1, 0]])).tolist() == [[5, 7, -1]]


def _marginal_argmax(logits: torch.Tensor, fields: dict, vocab: int, row: int, position: int) -> int:
    entries = fields["codebook"].shape[1]
    firsts = first_ids(fields["codebook"], fields["codebook_lengths"])[row]
    probs = logits[row, position].float().softmax(-1)
    marginal = probs[:vocab].clone()
    installed = int(fields["installed"][row, position])
    for slot in range(min(entries, installed)):
        if firsts[slot] >= 0:
            marginal[firsts[slot]] += probs[vocab + slot]
    return int(marginal.argmax())


@pytest.mark.parametrize("valve", [False, True])
def test_generate_writes_codes_that_start_with_the_marginals_token(saved, valve):
    _, tok, model = saved
    vocab = tok.vocab_size
    tok.padding_side = "left"
    batch = tok([TEXTS[0], TEXTS[1] * 2], return_tensors="pt", padding=True, add_special_tokens=False)
    width = batch["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(
            **batch, max_new_tokens=24, do_sample=False, marginal_first_token=True, output_hypertokens=valve is False
        )
        plain = model.generate(
            **batch, max_new_tokens=24, do_sample=False, output_hypertokens=valve is False, marginal_first_token=False
        )
        mask = torch.cat([batch["attention_mask"], torch.ones_like(out[:, width:])], 1)
        fields = codebook_fields(model.codebook_config(), out, mask)
        logits = model(input_ids=out, attention_mask=mask, **fields).logits
    changed = 0
    for row in range(out.shape[0]):
        tracker = CodecState(model.codebook_config())
        tracker.feed_codes(batch["input_ids"][row][batch["attention_mask"][row].bool()].numpy())
        for step, code in enumerate(out[row, width:].tolist()):
            ids, _ = tracker.feed_codes([code])
            first = int(ids[0])
            assert first == _marginal_argmax(logits, fields, vocab, row, width + step - 1)
            if valve:
                assert code < vocab
        changed += int(not torch.equal(out[row], plain[row]))
    assert changed > 0  # the tiny model's greedy codes do not all start with the marginal's token


def test_the_config_sets_the_default(saved):
    _, tok, model = saved
    batch = tok([TEXTS[1]], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        by_keyword = model.generate(**batch, max_new_tokens=12, do_sample=False, marginal_first_token=True)
        before, model.config.marginal_first_token = model.config.marginal_first_token, True
        try:
            by_config = model.generate(**batch, max_new_tokens=12, do_sample=False)
            turned_off = model.generate(**batch, max_new_tokens=12, do_sample=False, marginal_first_token=False)
        finally:
            model.config.marginal_first_token = before
        plain = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert torch.equal(by_config, by_keyword)
    assert torch.equal(turned_off, plain)


def test_the_valve_writes_the_marginals_token_unless_told_otherwise(saved):
    # Unset (None, the default), the marginal is on for the valve and off for full decoding; a
    # config that sets it, or the keyword, wins.
    _, tok, model = saved
    assert model.config.marginal_first_token is None
    tok.padding_side = "left"
    batch = tok([TEXTS[0], TEXTS[1] * 2], return_tensors="pt", padding=True, add_special_tokens=False)
    options = dict(max_new_tokens=24, do_sample=False, output_hypertokens=False)
    with torch.no_grad():
        default = model.generate(**batch, **options)
        marginal = model.generate(**batch, **options, marginal_first_token=True)
        own = model.generate(**batch, **options, marginal_first_token=False)
        full = model.generate(**batch, max_new_tokens=24, do_sample=False)
        full_plain = model.generate(**batch, max_new_tokens=24, do_sample=False, marginal_first_token=False)
        model.config.marginal_first_token = False
        try:
            configured_off = model.generate(**batch, **options)
        finally:
            model.config.marginal_first_token = None
    assert torch.equal(default, marginal)
    assert not torch.equal(default, own)  # the tiny model's valve writes other ids without it
    assert torch.equal(configured_off, own)
    assert torch.equal(full, full_plain)


@pytest.mark.parametrize(("marginal", "valve"), [(True, False), (True, True), (False, True), (None, True)])
def test_the_static_loop_writes_what_generate_writes(saved, marginal, valve):
    from zip2zip.generation.static import StaticGenerator

    _, tok, model = saved
    tok.padding_side = "left"
    prompts = [TEXTS[0], TEXTS[1] * 2]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    width = batch["input_ids"].shape[1]
    before, model.config.marginal_first_token = model.config.marginal_first_token, marginal
    try:
        with torch.no_grad():
            expected = model.generate(
                **batch,
                max_new_tokens=24,
                do_sample=False,
                output_hypertokens=not valve,
                eos_token_id=None,
                pad_token_id=0,
            )
        generator = StaticGenerator.for_zip2zip(
            model, tok, batch_size=2, max_cache_len=160, output_hypertokens=not valve
        )
        generator.stop_ids = frozenset()
        rows = [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], batch["attention_mask"])]
        out = generator.generate(rows, max_new_base_tokens=24)
    finally:
        model.config.marginal_first_token = before
    for row in range(2):
        new = expected[row, width:].tolist()
        assert len(out.tokens[row]) >= 8 and out.tokens[row] == new[: len(out.tokens[row])]
        if valve:
            assert max(out.tokens[row]) < tok.vocab_size


@pytest.mark.parametrize(
    ("valve", "source"), [(False, "lookup"), (True, "lookup"), (True, "hypertokens"), (True, "both")]
)
def test_speculation_verifies_against_the_marginals_choice(saved, valve, source):
    _, tok, model = saved
    tok.padding_side = "left"
    batch = tok(
        [TEXTS[0], TEXTS[1] * 2, "x = 1\n" * 6 + "y = 2\n"], return_tensors="pt", padding=True, add_special_tokens=False
    )
    options = dict(max_new_tokens=40, do_sample=False, marginal_first_token=True, output_hypertokens=not valve)
    with torch.no_grad():
        plain = model.generate(**batch, **options)
        drafted = model.generate(**batch, **options, prompt_lookup_num_tokens=6, draft_source=source)
    assert torch.equal(drafted, plain)
    out = speculative_generate(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=40,
        output_hypertokens=not valve,
        draft_source=source,
        marginal_first_token=True,
    )
    assert torch.equal(out.sequences, plain)
    assert out.stats.accepted > 0


def test_a_share_threshold_keeps_only_the_hypertokens_the_model_is_sure_of():
    vocab = 4
    # Base id 2 leads the marginal (0.1 + 0.2 + 0.3 of a softmax over these scores); slot 0 holds
    # a third of that, slot 1 half.
    probs = torch.tensor([[0.15, 0.25, 0.1, 0.0, 0.2, 0.3, 0.0, 0.0]])
    scores = probs.clamp(min=1e-12).log()
    scores[0, [3, 6, 7]] = float("-inf")
    firsts = torch.tensor([[2, 2, 1, -1]])
    assert torch.isfinite(keep_marginal_first(scores, firsts, vocab, 0.3)[0, [2, 4, 5]]).all()
    half = keep_marginal_first(scores, firsts, vocab, 0.45)
    assert torch.isfinite(half[0, [2, 5]]).all() and torch.isinf(half[0, [0, 1, 3, 4, 6, 7]]).all()
    none = keep_marginal_first(scores, firsts, vocab, 0.9)
    assert torch.isfinite(none[0, 2]) and torch.isinf(none[0, [4, 5]]).all()  # the base id stays


def test_the_share_threshold_lies_between_hypertoken_output_and_the_valve(saved):
    from zip2zip import ConfigError
    from zip2zip.errors import ModelInputError
    from zip2zip.generation.static import StaticGenerator
    from zip2zip.modeling.configuration import Zip2ZipConfig

    _, tok, model = saved
    tok.padding_side = "left"
    batch = tok([TEXTS[0], TEXTS[1] * 2], return_tensors="pt", padding=True, add_special_tokens=False)
    width = batch["input_ids"].shape[1]
    options = dict(max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        zero = model.generate(**batch, **options, hypertoken_min_share=0.0, marginal_first_token=True)
        marginal = model.generate(**batch, **options, marginal_first_token=True)
        everything = model.generate(**batch, **options, hypertoken_min_share=1.0)
        valve = model.generate(**batch, **options, output_hypertokens=False)
        half = model.generate(**batch, **options, hypertoken_min_share=0.35)
        drafted = model.generate(**batch, **options, hypertoken_min_share=0.35, prompt_lookup_num_tokens=6)
    assert torch.equal(zero, marginal)
    assert torch.equal(everything, valve)  # a share of 1 keeps no hypertoken: the valve's codes
    assert torch.equal(drafted, half)  # speculation verifies against the same choice
    written = half[:, width:]
    # The tiny model writes fewer hypertokens at that share, but some (35 and 5 of 48 codes).
    assert 0 < int((written >= tok.vocab_size).sum()) < int((marginal[:, width:] >= tok.vocab_size).sum())
    before = model.config.hypertoken_min_share
    model.config.hypertoken_min_share = 0.35
    try:
        with torch.no_grad():
            by_config = model.generate(**batch, **options)
        generator = StaticGenerator.for_zip2zip(model, tok, batch_size=2, max_cache_len=160)
        generator.stop_ids = frozenset()
        rows = [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], batch["attention_mask"])]
        out = generator.generate(rows, max_new_base_tokens=24)
    finally:
        model.config.hypertoken_min_share = before
    assert torch.equal(by_config, half)
    for row in range(2):
        assert len(out.tokens[row]) >= 8 and out.tokens[row] == written[row, : len(out.tokens[row])].tolist()
    with pytest.raises(ModelInputError, match="hypertoken_min_share"):
        model.generate(**batch, max_new_tokens=2, hypertoken_min_share=1.5)
    with pytest.raises(ConfigError, match="hypertoken_min_share"):
        Zip2ZipConfig(hypertoken_min_share=-0.1)
