"""Differential tests against the paper's reference codec, PyPI `zip2zip-compression==0.3.4`.

On valid input our codes and entry ids must be identical to its `LZWCompressor.encode`, so that
sequences and checkpoints made with either are interchangeable. The reference treats its
`pad_token_id` as disabled, so the pad id is passed to us as a disabled id too.
"""

from __future__ import annotations

import numpy as np
import pytest
import zip2zip_compression as reference
from hypothesis import given
from hypothesis import strategies as st

import zip2zip as z


def reference_encode(vocab, k, s, pad, disabled, ids):
    compressor = reference.LZWCompressor(vocab, k, s, pad, sorted(disabled))
    codes, _mask, codebook = compressor.encode(list(map(int, ids)))
    return list(codes), codebook.to_dict()


def ours(vocab, k, s, pad, disabled, ids):
    encoding = z.encode_ids(z.CodebookConfig(vocab, k, s, {*disabled, pad}), ids)
    entries = {
        vocab + row: encoding.codebook[row, :length].tolist() for row, length in enumerate(encoding.codebook_lengths)
    }
    return encoding.codes.tolist(), entries


@given(
    vocab=st.integers(1, 12),
    k=st.integers(0, 64),
    s=st.integers(1, 6),
    data=st.data(),
)
def test_identical_to_reference_on_random_configs(vocab, k, s, data):
    pad = data.draw(st.integers(0, vocab - 1))
    disabled = data.draw(st.sets(st.integers(0, vocab - 1), max_size=3))
    ids = data.draw(st.lists(st.integers(0, vocab - 1), max_size=400))
    assert ours(vocab, k, s, pad, disabled, ids) == reference_encode(vocab, k, s, pad, disabled, ids)


@pytest.mark.parametrize("s", [1, 2, 4, 8])
@pytest.mark.parametrize("k", [0, 1, 2048])
def test_identical_to_reference_on_long_skewed_streams(k, s):
    rng = np.random.default_rng(k * 10 + s)
    # Zipf-like ids over a large vocabulary: realistic repetition, many distinct pairs.
    ids = np.minimum(rng.zipf(1.3, size=30_000) - 1, 49_151)
    disabled = set(range(10)) | {49_000}
    assert ours(49_152, k, s, 0, disabled, ids) == reference_encode(49_152, k, s, 0, disabled, ids)


@pytest.mark.parametrize("protect_digits", [True, False], ids=["digits-protected", "digits-merged"])
def test_identical_to_reference_on_real_token_streams(smollm2_tokenizer, corpus_token_ids, protect_digits):
    """Every corpus file, SmolLM2 ids, cut in 8,192-id windows plus each file whole (frozen codebook)."""
    from zip2zip.sources import default_disabled_ids

    vocab = len(smollm2_tokenizer)
    pad = smollm2_tokenizer.pad_token_id
    disabled = set(default_disabled_ids(smollm2_tokenizer, protect_digits=protect_digits))
    # transformers < 5.24 gives SmolLM2's GGUF tokenizer no pad token
    assert (pad is None or pad in disabled) and len(disabled) >= 17 + (10 if protect_digits else 0)
    compressor = reference.LZWCompressor(vocab, 2048, 4, pad, sorted(disabled))
    config = z.CodebookConfig(vocab, 2048, 4, disabled)
    compared = 0
    for name, ids in corpus_token_ids.items():
        windows = [ids[i : i + 8192] for i in range(0, len(ids), 8192)] + [ids]
        for window, ours in zip(windows, z.encode_ids_batch(config, windows)):
            codes, _mask, codebook = compressor.encode(window.tolist())
            assert ours.codes.tolist() == list(codes), name
            entries = codebook.to_dict()
            assert len(entries) == ours.num_entries, name
            for row, length in enumerate(ours.codebook_lengths):
                assert entries[vocab + row] == ours.codebook[row, :length].tolist(), name
            compared += len(window)
    assert compared >= 2 * sum(len(ids) for ids in corpus_token_ids.values())
