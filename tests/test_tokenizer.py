"""Zip2ZipTokenizer: exactness against the base tokenizer, the transformers-like surface, errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import tokenizers
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import decoders, models, pre_tokenizers

import zip2zip as z

# Text that stresses tokenizers: emoji (with ZWJ and skin tones), combining marks, RTL, CJK,
# control characters, long whitespace runs, digits, and plain ASCII that repeats (so that
# hypertokens appear).
SPECIAL_PIECES = [
    "👩‍👩‍👧‍👦",
    "👍🏽",
    "🇫🇷",
    "é",
    "é",
    "ǅ",
    "ﬁ",
    "שָׁלוֹם",
    "مرحبا",
    "東京タワー",
    "한국어",
    "\t",
    "\r\n",
    "\x00",
    "\x1b[31m",
    "\u200b",
    "\u2028",
    " " * 17,
    "\n" * 5,
    "12345",
    "3.14159",
    "def f(x):\n    return x\n",
    "the the the ",
    "ab" * 9,
]
texts = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(SPECIAL_PIECES) | st.text(max_size=8), max_size=40).map("".join),
)


def byte_fallback_tokenizer() -> tokenizers.Tokenizer:
    """A tiny SentencePiece-style BPE with byte fallback, built in-process: most characters
    are not in its vocabulary and come out as <0xXX> byte tokens."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece in ["▁", "t", "h", "e", "a", "b", "c", "th", "▁th", "▁the", "ab", "abc"]:
        vocab[piece] = len(vocab)
    merges = [("t", "h"), ("▁", "th"), ("▁th", "e"), ("a", "b"), ("ab", "c")]
    tokenizer = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.normalizer = tokenizers.normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(
        [tokenizers.AddedToken("<s>", special=True), tokenizers.AddedToken("</s>", special=True)]
    )
    return tokenizer


# Byte-level BPE: smollm2, llama3, qwen2, gpt2, starcoder. SentencePiece with byte fallback:
# phi3, mistral-spm, and the tiny in-process one.
TOKENIZERS_UNDER_TEST = ["smollm2", "llama3", "phi3", "qwen2", "gpt2", "starcoder", "mistral-spm", "byte-fallback"]


@pytest.fixture(scope="module", params=TOKENIZERS_UNDER_TEST)
def pair(request):
    """(Zip2ZipTokenizer, base transformers tokenizer) for each tokenizer under test; a small K
    so that codebooks fill and freeze within the examples."""
    if request.param == "byte-fallback":
        from transformers import PreTrainedTokenizerFast

        base = PreTrainedTokenizerFast(tokenizer_object=byte_fallback_tokenizer(), bos_token="<s>", eos_token="</s>")
    else:
        from real_tokenizers import load_real_tokenizer

        base = load_real_tokenizer(request.param)
    return z.Zip2ZipTokenizer.from_base(base, max_codebook_size=64), base


@given(text=texts)
def test_decode_of_encode_is_the_base_round_trip(pair, text):
    tok, base = pair
    base_ids = base.encode(text, add_special_tokens=False)
    codes = tok.encode(text, add_special_tokens=False)
    assert codes == z.encode_ids(tok.config, base_ids).codes.tolist()
    assert tok.decode(codes) == base.decode(base_ids)
    assert tok.expand(codes).tolist() == base_ids


@given(text=texts, cut=st.integers(0, 200))
def test_streamed_text_joins_to_the_full_decode(pair, text, cut):
    tok, base = pair
    codes = tok.encode(text * 2)
    stream = tok.stream()
    chunks = [stream.step([c]) for c in codes[:cut]] + [stream.step(codes[cut:])]
    full = tok.decode(codes)
    for chunk in chunks:
        # U+FFFD in a chunk means a character was cut, unless the base decode has one too.
        assert "\ufffd" not in chunk or "\ufffd" in full, "a partial character was emitted"
    chunks.append(stream.flush())
    assert "".join(chunks) == full


def greedy_codes(state: z.CodecState, ids: list[int]) -> list[int]:
    """Codes a model could emit for ``ids`` after ``state``: longest installed phrase first."""
    tracker = state.copy()
    codes = []
    position = 0
    while position < len(ids):
        table, lengths = tracker.phrases()
        known = {
            tuple(row[:n]): tracker.config.vocab_size + i for i, (row, n) in enumerate(zip(table.tolist(), lengths))
        }
        code, size = ids[position], 1
        for end in range(position + 2, min(len(ids), position + tracker.config.max_subtokens) + 1):
            if tuple(ids[position:end]) in known:
                code, size = known[tuple(ids[position:end])], end - position
        tracker.feed_codes([code])
        codes.append(code)
        position += size
    return codes


@given(prompt=texts, continuation=texts)
def test_generated_suffix_decodes_with_the_prompt_state(pair, prompt, continuation):
    """A generated suffix is read with the state after the prompt's codes, whose last phrase is
    still open; the final codebook equals canonical encoding of the whole text."""
    tok, base = pair
    prompt_codes = tok.encode(prompt, add_special_tokens=False)
    prompt_ids = tok.expand(prompt_codes).tolist()
    suffix_ids = base.encode(continuation, add_special_tokens=False)
    state = tok.state_after(prompt_codes)
    suffix = greedy_codes(state, suffix_ids)
    assert tok.expand(suffix, state).tolist() == suffix_ids
    assert tok.decode(suffix, state=state) == base.decode(suffix_ids)
    canonical = z.CodecState(tok.config)
    canonical.feed_ids(prompt_ids + suffix_ids)
    assert tok.state_after(suffix, state) == canonical
    stream = tok.stream(state)
    assert stream.step(suffix) + stream.flush() == base.decode(suffix_ids)


def test_call_pads_truncates_and_returns_tensors(smollm2_tokenizer):
    import torch

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer)
    texts_ = ["the cat sat on the mat, the cat sat on the mat", "hi"]
    singles = [tok(t) for t in texts_]
    for side in ("left", "right"):
        batch = tok(texts_, padding=True, return_tensors="pt", padding_side=side)
        assert isinstance(batch["input_ids"], torch.Tensor) and batch["input_ids"].dtype == torch.int64
        length = max(len(s["input_ids"]) for s in singles)
        assert batch["input_ids"].shape == (2, length)
        for row, single in enumerate(singles):
            n = len(single["input_ids"])
            span = slice(length - n, length) if side == "left" else slice(0, n)
            assert batch["input_ids"][row, span].tolist() == single["input_ids"]
            assert batch["installed"][row, span].tolist() == single["installed"]
            assert batch["attention_mask"][row].sum() == n
            assert batch["attention_mask"][row, span].all()
            entries = len(single["codebook_lengths"])
            assert batch["codebook_lengths"][row, :entries].tolist() == single["codebook_lengths"].tolist()
            assert not batch["codebook_lengths"][row, entries:].any()
            assert batch["codebook"][row, :entries].tolist() == single["codebook"].tolist()
    as_np = tok(texts_, padding="max_length", max_length=40, return_tensors="np")
    assert isinstance(as_np["input_ids"], np.ndarray) and as_np["input_ids"].shape == (2, 40)
    cut = tok(texts_[0], truncation=True, max_length=5)
    assert cut["input_ids"] == singles[0]["input_ids"][:5]
    assert len(cut["codebook_lengths"]) == cut["installed"][-1]
    with pytest.raises(ValueError, match="padding=True"):
        tok(texts_, return_tensors="pt")
    with pytest.raises(ValueError, match="max_length"):
        tok(texts_, truncation=True)
    with pytest.raises(ValueError, match="padding"):
        tok(texts_, padding="sideways")
    with pytest.raises(TypeError):
        tok([1, 2, 3])


def test_chat_template_and_tokens(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer)
    messages = [{"role": "user", "content": "Say hello, hello, hello!"}]
    codes = tok.apply_chat_template(messages, add_generation_prompt=True)
    base_ids = smollm2_tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    if isinstance(base_ids, dict) or hasattr(base_ids, "keys"):
        base_ids = base_ids["input_ids"]
    assert tok.expand(codes).tolist() == list(base_ids)
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == smollm2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokens = tok.convert_ids_to_tokens(codes)
    assert "".join(tokens) == "".join(smollm2_tokenizer.convert_ids_to_tokens(list(base_ids)))
    assert any(code >= tok.vocab_size for code in codes), "expected at least one hypertoken"
    assert tok.eos_token == smollm2_tokenizer.eos_token and tok.pad_token_id == smollm2_tokenizer.pad_token_id


def test_chat_template_truncates_like_a_call(smollm2_tokenizer):
    """truncation=True with max_length (codes) cuts the templated codes as __call__ does; it was
    ignored (29 codes for max_length=3)."""
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer)
    messages = [{"role": "user", "content": "Say hello, hello, hello, hello!"}]
    full = tok.apply_chat_template(messages, add_generation_prompt=True)
    cut = tok.apply_chat_template(messages, add_generation_prompt=True, truncation=True, max_length=3)
    assert len(full) > 3 and list(cut) == list(full[:3])
    import torch

    batch = tok.apply_chat_template(
        messages, add_generation_prompt=True, truncation=True, max_length=5, return_dict=True, return_tensors="pt"
    )
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    direct = tok(rendered, add_special_tokens=False, truncation=True, max_length=5, return_tensors="pt")
    assert all(torch.equal(batch[k], direct[k]) for k in direct)
    for bad in (True, 2.5, "3"):
        with pytest.raises(TypeError, match="max_length must be an integer"):
            tok("hello", truncation=True, max_length=bad)
    assert len(tok("hello hello hello", truncation=True, max_length=np.int64(2))["input_ids"]) == 2
    assert len(tok) == tok.vocab_size + 2048


def test_smollm2_decode_keeps_spaces_before_punctuation(smollm2_tokenizer, tmp_path, caplog):
    """The GGUF conversion turns clean_up_tokenization_spaces on, which SmolLM2's own config
    leaves off (older transformers would strip " ," to ","; newer ones warn and ignore it): the
    loader turns it off, so decoding returns the text, saved and loaded again too, silently."""
    text = "a , b . c ! d ? it 's x"
    assert smollm2_tokenizer.clean_up_tokenization_spaces is False
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer)
    tok.save_pretrained(tmp_path / "saved")
    again = z.Zip2ZipTokenizer.from_pretrained(tmp_path / "saved")
    with caplog.at_level("WARNING"):
        for each in (tok, again):
            assert each.decode(each.encode(text, add_special_tokens=False)) == text
            assert each.batch_decode([each.encode(text, add_special_tokens=False)] * 2) == [text, text]
    assert "clean_up_tokenization_spaces" not in caplog.text


def test_sources_all_give_the_same_codes(smollm2_tokenizer, tmp_path):
    from zip2zip.sources import smollm2_gguf_path

    text = "for i in range(10):\n    print(i, i)\n" * 4
    expected = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer).encode(text)
    smollm2_tokenizer.save_pretrained(tmp_path / "folder")
    smollm2_tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    sources = [
        smollm2_tokenizer.backend_tokenizer,
        str(tmp_path / "tokenizer.json"),
        tmp_path / "folder",
        smollm2_gguf_path(),
    ]
    for source in sources:
        tok = z.Zip2ZipTokenizer.from_base(source)
        assert tok.encode(text, add_special_tokens=False) == expected, type(source)
    with pytest.raises(TypeError, match="source must be"):
        z.Zip2ZipTokenizer.from_base(42)


def test_hub_id_resolves_from_the_offline_cache(smollm2_tokenizer, tmp_path):
    """A hub id is looked up in the local huggingface_hub cache with HF_HUB_OFFLINE=1 (in a
    subprocess, since huggingface_hub reads its settings at import)."""
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--zip2zip-test--smol"
    smollm2_tokenizer.save_pretrained(repo / "snapshots" / ("0" * 40))
    # A model repository has a config.json; transformers reads it to pick the tokenizer class.
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text('{"model_type": "llama"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    script = "import zip2zip as z; print(z.Zip2ZipTokenizer.from_base('zip2zip-test/smol').encode('hello hello hello'))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer).encode("hello hello hello")
    assert result.stdout.strip().splitlines()[-1] == str(expected)


def test_save_load_and_pickle(smollm2_tokenizer, tmp_path):
    tok = z.Zip2ZipTokenizer.from_base(
        smollm2_tokenizer, max_codebook_size=100, max_subtokens=3, extra_disabled_ids=[42]
    )
    text = "abc abc abc 42 42 42"
    tok.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "zip2zip_config.json").read_text())
    assert saved["max_codebook_size"] == 100 and 42 in saved["disabled_ids"]
    for loaded in (z.Zip2ZipTokenizer.from_pretrained(tmp_path), pickle.loads(pickle.dumps(tok))):
        assert loaded.config == tok.config
        assert loaded.encode(text) == tok.encode(text)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "max_subtokens": "4"}, "max_subtokens must be int"),
        (lambda d: {**d, "format_version": 99}, "format_version"),
        (lambda d: {**d, "max_subtokens": 0}, "max_subtokens must be in"),
        (lambda d: {**d, "disabled_ids": d["disabled_ids"][1:]}, "disabled_ids do not match"),
        (lambda d: {**d, "vocab_size": 10}, "out of range"),
        (lambda d: {**d, "vocab_size": 10**30}, "out of range"),
        (lambda d: {**d, "disabled_ids": [*d["disabled_ids"], 2**70]}, "out of range"),
        (lambda d: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=[
        "garbage",
        "wrong-type",
        "version",
        "invalid-S",
        "disabled-mismatch",
        "small-vocab",
        "huge-vocab",
        "huge-disabled-id",
        "deep-json",
    ],
)
def test_corrupted_config_raises(smollm2_tokenizer, tmp_path, edit, message):
    z.Zip2ZipTokenizer.from_base(smollm2_tokenizer).save_pretrained(tmp_path)
    path = tmp_path / "zip2zip_config.json"
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(z.ConfigError, match=message):
        z.Zip2ZipTokenizer.from_pretrained(tmp_path)


def test_bad_codes_and_configs(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer)
    codes = tok.encode("one two one two one two one two")
    hyper = [c for c in codes if c >= tok.vocab_size]
    assert hyper
    with pytest.raises(z.InvalidCodeError, match="not a known hypertoken"):
        tok.decode([hyper[-1]])  # needs the state it was made in
    with pytest.raises(z.InvalidCodeError, match="out of range"):
        tok.decode([len(tok)])
    with pytest.raises(z.InvalidCodeError, match="out of range"):
        tok.stream().step([-1])
    with pytest.raises(z.ConfigError, match="smaller than"):
        z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, vocab_size=100)
    with pytest.raises(z.ConfigError):
        z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_subtokens=0)
    with pytest.raises(z.TokenizerError, match="does not load"):
        z.HyperTokenizer("{}", tok.config)
    other = z.CodecState(z.CodebookConfig(tok.vocab_size, 10, 2))
    with pytest.raises(z.ConfigError, match="another codebook config"):
        tok.decode(codes, state=other)
    for read in (tok.expand, tok.state_after, tok.convert_ids_to_tokens):  # they took it before
        with pytest.raises(z.ConfigError, match="another codebook config"):
            read(codes, other)
    with pytest.raises(ValueError):
        tok.encode("\ud800")  # a lone surrogate is not text


def test_batch_encoding_runs_in_parallel_and_matches_singles(smollm2_tokenizer, corpus_token_ids):
    from zip2zip.corpus import corpus_files

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer)
    files = corpus_files()
    texts_ = [f.read()[:20_000] for f in files]
    batch = tok(texts_, add_special_tokens=False)
    for text, codes in zip(texts_, batch["input_ids"]):
        ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
        assert codes == z.encode_ids(tok.config, ids).codes.tolist()
    assert tok.batch_decode(batch["input_ids"]) == [
        smollm2_tokenizer.decode(smollm2_tokenizer.encode(t, add_special_tokens=False)) for t in texts_
    ]


def test_very_long_input_is_exact(pair):
    """100,000 characters of mixed scripts, emoji and whitespace in one sequence: the codebook
    fills and freezes, and everything still round-trips."""
    tok, base = pair
    rng = np.random.default_rng(7)
    text = "".join(SPECIAL_PIECES[i] for i in rng.integers(0, len(SPECIAL_PIECES), size=10_000))[:100_000]
    base_ids = base.encode(text, add_special_tokens=False)
    codes = tok.encode(text, add_special_tokens=False)
    assert codes == z.encode_ids(tok.config, base_ids).codes.tolist()
    assert tok.state_after(codes).is_full
    assert tok.decode(codes) == base.decode(base_ids)
    stream = tok.stream()
    assert "".join(stream.step(codes[i : i + 97]) for i in range(0, len(codes), 97)) + stream.flush() == base.decode(
        base_ids
    )


def test_sources_that_are_no_tokenizer_or_model_say_so(tmp_path):
    """Paths that do not exist, and files that are no tokenizer or model, are named as such
    (they were taken for hub ids: "Repo id must be in the form ...")."""
    from zip2zip.sources import load_base_model

    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a model")
    for source in ("/nonexistent/tokenizer", "./no/such/folder", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="no such file or folder"):
            z.Zip2ZipTokenizer.from_base(source)
        with pytest.raises(FileNotFoundError, match="no such file or folder"):
            load_base_model(source)
    with pytest.raises(ValueError, match="neither a .gguf nor a tokenizer .json"):
        z.Zip2ZipTokenizer.from_base(str(text_file))
    with pytest.raises(ValueError, match="is a file but not a .gguf file"):
        load_base_model(str(text_file))
