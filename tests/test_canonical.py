"""The canonical mask: the codes canonical encoding cannot emit next, checked against the codec."""

from __future__ import annotations

import numpy as np
import torch

import zip2zip as z
from zip2zip.modeling.canonical import mask_non_canonical_, non_canonical_mask


def _tensors(encoding):
    codes = torch.from_numpy(np.asarray(encoding.codes, dtype=np.int64))[None]
    codebook = torch.from_numpy(np.asarray(encoding.codebook, dtype=np.int64))[None]
    lengths = torch.from_numpy(np.asarray(encoding.codebook_lengths, dtype=np.int64))[None]
    installed = torch.from_numpy(np.asarray(encoding.installed, dtype=np.int64))[None]
    return codes, codebook, lengths, installed


def _phrase(code, codebook, lengths, vocab):
    return [code] if code < vocab else codebook[code - vocab][: lengths[code - vocab]].tolist()


def test_the_mask_excludes_exactly_the_codes_that_would_extend_the_last_phrase():
    """For every position of random repetitive streams and every code a decoder could read next
    (each base id, each installed entry), the mask says "excluded" exactly when canonical
    encoding of the text so far followed by that code's first base id would not end the text so
    far with the same codes (the encoder would have read the id into the last phrase); the
    stream's own next code is never excluded."""
    rng = np.random.default_rng(0)
    checked = excluded = 0
    for trial in range(12):
        vocab, size, subtokens = 5, int(rng.integers(4, 40)), int(rng.integers(2, 5))
        disabled = [4] if trial % 3 == 0 else []
        config = z.CodebookConfig(vocab, size, subtokens, disabled_ids=disabled)
        ids = rng.integers(0, vocab if disabled else 4, size=int(rng.integers(20, 90))).astype(np.int32)
        encoding = z.encode_ids(config, ids)
        codes, codebook, lengths, installed = _tensors(encoding)
        mask = non_canonical_mask(codes, codebook, lengths, installed, vocab)[0]
        assert mask.shape == (codes.shape[1], vocab + codebook.shape[1])
        stream = codes[0].tolist()
        cb, ln = codebook[0], lengths[0]
        for i in range(len(stream)):
            text = [t for code in stream[: i + 1] for t in _phrase(code, cb, ln, vocab)]
            if i + 1 < len(stream):
                assert not mask[i, stream[i + 1]], (trial, i)
            for code in list(range(vocab)) + [vocab + s for s in range(int(installed[0, i]))]:
                first = _phrase(code, cb, ln, vocab)[0]
                again = z.encode_ids(config, np.array(text + [first], dtype=np.int32)).codes.tolist()
                expected = again[: i + 1] != stream[: i + 1]
                assert bool(mask[i, code]) == expected, (trial, i, code)
                checked += 1
                excluded += expected
            assert not mask[i, vocab + int(installed[0, i]) :].any()  # entries not installed stay as they are
    assert checked > 3000 and excluded > 300, (checked, excluded)


def test_masking_logits_renormalises_onto_the_possible_codes():
    config = z.CodebookConfig(4, 16, 3)
    encoding = z.encode_ids(config, np.array([0, 1, 0, 1, 0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int32))
    codes, codebook, lengths, installed = _tensors(encoding)
    mask = non_canonical_mask(codes, codebook, lengths, installed, 4)
    assert mask.any()
    logits = torch.zeros(1, codes.shape[1], 4 + codebook.shape[1])
    out = mask_non_canonical_(logits, mask)
    assert out is logits and torch.isneginf(out[mask]).all() and torch.isfinite(out[~mask]).all()
    probs = out.softmax(-1)
    assert torch.allclose(probs.sum(-1), torch.ones(1, codes.shape[1]))
    assert (probs[~mask] > 0).all()


def test_no_entries_means_nothing_is_masked_and_batches_are_row_independent():
    config = z.CodebookConfig(4, 16, 3)
    rows = [
        z.encode_ids(config, np.array(s, dtype=np.int32)) for s in ([0, 1, 0, 1, 0, 1, 2, 0, 1], [3, 2, 3, 2, 3, 2])
    ]
    singles = [non_canonical_mask(*_tensors(r), 4)[0] for r in rows]
    # one padded batch: codes padded with 0, entries padded with length 0, installed padded with the count
    length = max(r.codes.shape[0] for r in rows)
    entries = max(r.codebook.shape[0] for r in rows)
    codes = torch.zeros(2, length, dtype=torch.long)
    codebook = torch.zeros(2, entries, 3, dtype=torch.long)
    lengths = torch.zeros(2, entries, dtype=torch.long)
    installed = torch.zeros(2, length, dtype=torch.long)
    for b, r in enumerate(rows):
        n, e = r.codes.shape[0], r.codebook.shape[0]
        codes[b, :n] = torch.from_numpy(np.asarray(r.codes, dtype=np.int64))
        codebook[b, :e] = torch.from_numpy(np.asarray(r.codebook, dtype=np.int64))
        lengths[b, :e] = torch.from_numpy(np.asarray(r.codebook_lengths, dtype=np.int64))
        installed[b, :n] = torch.from_numpy(np.asarray(r.installed, dtype=np.int64))
    batch = non_canonical_mask(codes, codebook, lengths, installed, 4)
    for b, single in enumerate(singles):
        n, e = single.shape[0], single.shape[1] - 4
        assert torch.equal(batch[b, :n, : 4 + e], single)
        assert not batch[b, :n, 4 + e :].any()
    empty = non_canonical_mask(codes[:, :3], codebook[:, :0], lengths[:, :0], installed[:, :3] * 0, 4)
    assert empty.shape == (2, 3, 4) and not empty.any()


def _violations(model, codes, mask, prompt_length):
    """Generated positions whose next code canonical encoding could not have emitted."""
    from zip2zip.generation.fields import codebook_fields

    mask = torch.cat([mask, mask.new_ones(mask.shape[0], codes.shape[1] - mask.shape[1])], dim=1)
    fields = codebook_fields(model.codebook_config(), codes, mask)
    mask = non_canonical_mask(
        codes, fields["codebook"], fields["codebook_lengths"], fields["installed"], model.config.vocab_size
    )
    after = mask[:, :-1].gather(2, codes[:, 1:, None])[..., 0]  # code i+1 excluded after code i
    return int(after[:, prompt_length:].sum())


def test_canonical_outputs_mask_forward_and_make_generate_write_canonical_streams(saved):
    """With ``canonical_outputs``: ``forward``'s logits are the plain ones with the mask applied
    but at the last position; ``generate()`` never writes a code that would extend the code
    before it (the same model without the flag does); the valve (``output_hypertokens=False``)
    is left alone; the static loop and speculation write what ``generate()`` writes with it."""
    import copy

    from zip2zip.generation import speculative_generate
    from zip2zip.generation.static import StaticGenerator

    _, tok, model = saved
    canonical = copy.deepcopy(model)
    canonical.config.canonical_outputs = True
    text = "def add(a, b):\n    return a + b\n" * 4 + "def add"
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        plain, masked = model(**batch).logits, canonical(**batch).logits
    excluded = non_canonical_mask(
        batch["input_ids"], batch["codebook"], batch["codebook_lengths"], batch["installed"], model.config.vocab_size
    )
    excluded[:, -1] = False
    assert excluded.any()
    torch.testing.assert_close(masked, mask_non_canonical_(plain.clone(), excluded), rtol=0, atol=0)

    prompts = tok(
        ["def add(a, b):\n    return a + b\n" * 2, "x = 1\ny = 2\n" * 3],
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    length = prompts["input_ids"].shape[1]
    options = dict(max_new_tokens=40, min_new_tokens=40, do_sample=False)
    with torch.no_grad():
        before = model.generate(**prompts, **options)
        after = canonical.generate(**prompts, **options)
        valve = model.generate(**prompts, output_hypertokens=False, **options)
        valve_flagged = canonical.generate(**prompts, output_hypertokens=False, **options)
    assert _violations(model, before, prompts["attention_mask"], length) > 0
    assert _violations(model, after, prompts["attention_mask"], length) == 0
    assert torch.equal(valve, valve_flagged)
    # The static loop applies the mask too: the same codes as generate() with the flag.
    generator = StaticGenerator.for_zip2zip(canonical, tok, batch_size=2, max_cache_len=128)
    generator.stop_ids = frozenset()
    rows = [row[m.bool()].tolist() for row, m in zip(prompts["input_ids"], prompts["attention_mask"])]
    out = generator.generate(rows, max_new_base_tokens=40)
    for row in range(2):
        new = after[row, length:].tolist()
        assert len(out.tokens[row]) >= 10 and out.tokens[row] == new[: len(out.tokens[row])]
    assert any(out.tokens[row] != before[row, length:].tolist()[: len(out.tokens[row])] for row in range(2))
    # Speculation masks each verified position as the plain step would: the same codes.
    for drafts in (0, 4):
        spoken = speculative_generate(
            canonical, prompts["input_ids"], prompts["attention_mask"], max_new_tokens=40, num_draft_codes=drafts
        )
        assert torch.equal(spoken.sequences, after)
    assert spoken.stats.accepted > 0
    with torch.no_grad():
        looked = canonical.generate(**prompts, prompt_lookup_num_tokens=4, max_new_tokens=40, do_sample=False)
    assert torch.equal(looked, after)
