"""The real tokenizers of tests/real_tokenizers.py load offline and give the reference ids:
llama.cpp's for the GGUF vocabularies, SentencePiece's for Mistral's models.

Needs ``scripts/fetch_test_assets.sh`` to have run (a missing file fails with that hint).
"""

from __future__ import annotations

import pytest

from real_tokenizers import (
    ADDS_BOS,
    BYTE_LEVEL_BPE,
    KIND,
    LLAMA_CPP_VOCABS,
    MISTRAL_MODELS,
    REAL_TOKENIZERS,
    SENTENCEPIECE_BYTE_FALLBACK,
    VOCAB_SIZE,
    asset_path,
    llama_cpp_reference,
    load_real_tokenizer,
)

# Corpus text for the comparisons with SentencePiece: the start of every corpus file, as lines and
# as one multi-line text (enough to meet every script of the corpus, fast to encode).
SAMPLE_CHARS = 16_000


@pytest.fixture(scope="module")
def corpus_samples() -> list[str]:
    from zip2zip.corpus import corpus_files

    return [f.read()[:SAMPLE_CHARS] for f in corpus_files()]


def _first_mismatches(
    pairs: list[tuple[str, list[int], list[int]]], limit: int = 3
) -> list[tuple[str, int, list[int], list[int]]]:
    """(text, first differing position, expected ids there, ids got there) of the first ``limit``
    (text, expected, got) triples that differ."""
    found = []
    for text, expected, got in pairs:
        if expected != got:
            at = next(i for i, (e, g) in enumerate(zip([*expected, -1], [*got, -1])) if e != g)
            found.append((text[:60], at, expected[max(0, at - 2) : at + 6], got[max(0, at - 2) : at + 6]))
            if len(found) == limit:
                break
    return found


def test_the_tables_agree() -> None:
    assert set(KIND) == set(VOCAB_SIZE) == set(REAL_TOKENIZERS)
    assert set(KIND.values()) == {BYTE_LEVEL_BPE, SENTENCEPIECE_BYTE_FALLBACK}
    assert len(set(REAL_TOKENIZERS)) == len(REAL_TOKENIZERS)


@pytest.mark.parametrize("name", REAL_TOKENIZERS)
def test_loads_offline_with_its_vocabulary(name: str) -> None:
    tokenizer = load_real_tokenizer(name)
    assert load_real_tokenizer(name) is tokenizer  # cached
    size = VOCAB_SIZE[name]
    backend = tokenizer.backend_tokenizer
    assert len(tokenizer) == size
    assert backend.get_vocab_size(with_added_tokens=True) == size
    # Every id below the model's vocabulary size has a token, and no token lies beyond it.
    assert sorted(tokenizer.get_vocab().values()) == list(range(size))
    assert tokenizer.eos_token_id is not None and tokenizer.eos_token_id < size
    model = backend.model
    assert type(model).__name__ == "BPE"
    if KIND[name] == SENTENCEPIECE_BYTE_FALLBACK:
        assert model.byte_fallback
        assert all(tokenizer.convert_tokens_to_ids(f"<0x{byte:02X}>") < size for byte in range(256))
        assert tokenizer.encode("\u2603 x", add_special_tokens=False)[-1] == tokenizer.convert_tokens_to_ids("\u2581x")
    else:
        assert not model.byte_fallback
        assert type(backend.decoder).__name__ == "ByteLevel"


@pytest.mark.parametrize("name", REAL_TOKENIZERS)
def test_special_tokens_around_text(name: str) -> None:
    tokenizer = load_real_tokenizer(name)
    plain = tokenizer.encode("Hello world", add_special_tokens=False)
    expected = [tokenizer.bos_token_id, *plain] if name in ADDS_BOS else plain
    assert tokenizer("Hello world").input_ids == expected
    assert tokenizer.encode("Hello world") == expected


@pytest.mark.parametrize("name", REAL_TOKENIZERS)
def test_round_trips_text(name: str) -> None:
    backend = load_real_tokenizer(name).backend_tokenizer
    texts = [text for text, _ in llama_cpp_reference("llama2")] + ["", " ", "  two leading spaces", "digits 1234567"]
    for text in texts:
        ids = backend.encode(text, add_special_tokens=False).ids
        assert backend.decode(ids, skip_special_tokens=False) == text, (name, text)


@pytest.mark.parametrize("name", LLAMA_CPP_VOCABS)
def test_matches_llama_cpp_reference_ids(name: str) -> None:
    backend = load_real_tokenizer(name).backend_tokenizer
    reference = llama_cpp_reference(name)
    assert len(reference) >= 40
    encodings = backend.encode_batch([text for text, _ in reference], add_special_tokens=False)
    results = [(text, ids, encoding.ids) for (text, ids), encoding in zip(reference, encodings)]
    assert _first_mismatches(results) == []


def test_smollm2_splits_like_llama_cpp_smollm(corpus_samples: list[str]) -> None:
    """llama.cpp has no reference ids for SmolLM2; its "smollm" pre-tokenizer is its "starcoder" one
    (every digit alone, then GPT-2's split), which the starcoder reference ids check."""
    smollm2 = load_real_tokenizer("smollm2").backend_tokenizer.pre_tokenizer
    starcoder = load_real_tokenizer("starcoder").backend_tokenizer.pre_tokenizer
    texts = [text for text, _ in llama_cpp_reference("starcoder")] + corpus_samples
    for text in texts:
        assert smollm2.pre_tokenize_str(text) == starcoder.pre_tokenize_str(text)
    tokenizer = load_real_tokenizer("smollm2")
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("year 2024", add_special_tokens=False)) == [
        "year",
        "\u0120",
        "2",
        "0",
        "2",
        "4",
    ]


@pytest.mark.parametrize("name", MISTRAL_MODELS)
def test_mistral_matches_sentencepiece(name: str, corpus_samples: list[str]) -> None:
    """Same ids and same decoded text as SentencePiece itself on text with no special token in it
    (written in the text, a control token like ``<s>`` or ``[INST]`` is matched whole, the
    transformers convention, where SentencePiece spells it out)."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(asset_path(name)))
    tokenizer = load_real_tokenizer(name)
    backend = tokenizer.backend_tokenizer
    assert len(tokenizer) == processor.get_piece_size()
    assert tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))) == [
        processor.id_to_piece(i) for i in range(len(tokenizer))
    ]
    edge_cases = [
        "",
        " ",
        "  hi",
        "hi  ",
        "\n",
        " \n x",
        "\u2581 x",
        "\u2581\u2581x",
        "caf\u00e9 \U0001f916 \u2082\u00a0\t\ufb01",
    ]
    lines = [line for sample in corpus_samples for line in sample.split("\n")]
    texts = [text for text, _ in llama_cpp_reference("llama2")] + edge_cases + corpus_samples + lines
    expected = processor.encode(texts)
    encodings = backend.encode_batch(texts, add_special_tokens=False)
    results = [(text, ids, encoding.ids) for text, ids, encoding in zip(texts, expected, encodings)]
    assert _first_mismatches(results) == []
    decoded = backend.decode_batch(expected, skip_special_tokens=False)
    assert [t for t, d, e in zip(texts, decoded, processor.decode(expected)) if d != e] == []


def test_missing_assets_say_how_to_fetch_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ZIP2ZIP_ASSETS", str(tmp_path))
    for name in (*LLAMA_CPP_VOCABS, *MISTRAL_MODELS):
        with pytest.raises(FileNotFoundError, match="fetch_test_assets.sh"):
            asset_path(name)
    with pytest.raises(KeyError):
        asset_path("no-such-tokenizer")
    with pytest.raises(KeyError):
        llama_cpp_reference("mistral-spm")
