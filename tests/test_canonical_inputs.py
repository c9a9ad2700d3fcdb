"""Canonical inputs (`zip2zip.generation.canonical_inputs`): the model reads the canonical encoding
of its text at every step, the same choices as re-encoding the whole text and running the whole
sequence each step, sequences that decode to the text, and clear errors."""

from __future__ import annotations

import pytest
import torch

from tiny_models import TEXTS
from zip2zip.codec import encode_ids
from zip2zip.errors import ModelInputError
from zip2zip.generation.canonical_inputs import canonical_inputs_generate
from zip2zip.generation.fields import codebook_fields
from zip2zip.generation.sampling import SamplingConfig


def prompts():
    return [TEXTS[0], TEXTS[1] * 2, "x = 1\n" * 6 + "y = 2\n"]


def reference(model, tok, text, steps, stops):
    """Each step: encode the whole text canonically, run the model on all of it (no cache), take
    the last position's greedy code and append its phrase to the text."""
    config = model.codebook_config()
    ids = tok.base(text, add_special_tokens=False)["input_ids"]
    chosen, rewrites = [], 0
    for step in range(steps):
        codes = torch.from_numpy(encode_ids(config, ids).codes.astype("int64"))[None]
        with torch.no_grad():
            logits = model(input_ids=codes, **codebook_fields(config, codes, None)).logits[0, -1]
        code = int(logits.argmax())
        chosen.append(code)
        if code in stops:
            break
        phrase = tok.state_after(codes[0].tolist()).phrase(code).tolist()
        after = encode_ids(config, ids + phrase).codes.tolist()
        rewrites += step < steps - 1 and after[: codes.shape[1]] != codes[0].tolist()  # the last is not read
        ids += phrase
    return chosen, ids, rewrites


def test_the_same_choices_as_reencoding_and_rerunning_everything(saved):
    _, tok, model = saved
    eos = model.generation_config.eos_token_id
    stops = set() if eos is None else {eos} if isinstance(eos, int) else set(eos)
    total_rewrites = 0
    for text in prompts():
        batch = tok(text, return_tensors="pt", add_special_tokens=False)
        out = canonical_inputs_generate(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=30)
        chosen, ids, rewrites = reference(model, tok, text, 30, stops)
        assert out.new_codes[0] == chosen
        assert out.stats.rewrites == rewrites
        total_rewrites += rewrites
        # The chosen codes decode after the prompt to the text the model wrote.
        prompt = batch["input_ids"][0].tolist()
        written = tok.expand(out.new_codes[0], tok.state_after(prompt)).tolist()
        assert tok.base(text, add_special_tokens=False)["input_ids"] + written == ids
        assert out.stats.passes == len(chosen) - 1  # the last choice needs no pass
    assert total_rewrites > 0  # the rewriting path ran


def test_a_batch_gives_each_rows_own_choices(saved):
    _, tok, model = saved
    texts = prompts()
    tok.padding_side = "left"
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    given = {key: value.clone() for key, value in batch.items()}
    together = canonical_inputs_generate(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=25)
    assert together.stats.rewrites > 0
    assert all(torch.equal(batch[key], given[key]) for key in given)  # the caller's tensors are untouched
    for row, text in enumerate(texts):
        alone = tok(text, return_tensors="pt", add_special_tokens=False)
        single = canonical_inputs_generate(model, alone["input_ids"], alone["attention_mask"], max_new_tokens=25)
        assert together.new_codes[row] == single.new_codes[0]
    width = batch["input_ids"].shape[1]
    assert torch.equal(together.sequences[:, :width], batch["input_ids"])


def test_the_base_token_budget_ends_a_row(saved):
    _, tok, model = saved
    batch = tok(prompts()[2], return_tensors="pt", add_special_tokens=False)
    out = canonical_inputs_generate(
        model, batch["input_ids"], batch["attention_mask"], max_new_tokens=50, max_new_base_tokens=7
    )
    lengths = [
        len(tok.state_after(batch["input_ids"][0].tolist() + out.new_codes[0][:i]).phrase(c))
        for i, c in enumerate(out.new_codes[0])
    ]
    assert sum(lengths) >= 7 and sum(lengths[:-1]) < 7


def test_bad_requests_get_clear_errors(saved):
    _, tok, model = saved
    batch = tok(prompts()[0], return_tensors="pt", add_special_tokens=False)
    ids = batch["input_ids"]
    with pytest.raises(ModelInputError, match="max_new_tokens"):
        canonical_inputs_generate(model, ids, max_new_tokens=0)
    with pytest.raises(ModelInputError, match=r"\[B, P\]"):
        canonical_inputs_generate(model, ids[0], max_new_tokens=4)
    with pytest.raises(ModelInputError, match="left padding"):
        canonical_inputs_generate(
            model, ids, torch.cat([ids.new_ones(1, ids.shape[1] - 1), ids.new_zeros(1, 1)], 1), max_new_tokens=4
        )
    # The text written as base ids only is a valid stream, but not its canonical encoding.
    plain = torch.tensor([tok.base(prompts()[0], add_special_tokens=False)["input_ids"]])
    assert plain.shape[1] > ids.shape[1]
    with pytest.raises(ModelInputError, match="canonical prompt codes"):
        canonical_inputs_generate(model, plain, max_new_tokens=4)


def test_generate_runs_it_and_refuses_what_it_cannot_honour(saved):
    _, tok, model = saved
    tok.padding_side = "left"
    batch = tok(prompts(), return_tensors="pt", padding=True, add_special_tokens=False)
    direct = canonical_inputs_generate(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=12)
    with torch.no_grad():
        through = model.generate(**batch, max_new_tokens=12, do_sample=False, canonical_inputs=True)
    assert torch.equal(through, direct.sequences)
    # The valve with canonical inputs writes base ids only.
    valve = model.generate(**batch, max_new_tokens=12, do_sample=False, canonical_inputs=True, output_hypertokens=False)
    assert bool((valve[:, batch["input_ids"].shape[1] :] < tok.vocab_size).all())
    with pytest.raises(ModelInputError, match="num_beams"):
        model.generate(**batch, max_new_tokens=4, num_beams=2, canonical_inputs=True)
    with pytest.raises(ModelInputError, match="combine"):
        model.generate(**batch, max_new_tokens=4, canonical_inputs=True, prompt_lookup_num_tokens=4)
    with pytest.raises(ModelInputError, match="canonical_inputs does not support stop_strings"):
        model.generate(**batch, max_new_tokens=4, canonical_inputs=True, stop_strings=["x"], tokenizer=tok)
    with pytest.raises(ModelInputError, match="canonical_inputs does not support draft_source"):
        model.generate(**batch, max_new_tokens=4, canonical_inputs=True, draft_source="both")
    # canonical_inputs=False is plain generation.
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=6, do_sample=False)
        off = model.generate(**batch, max_new_tokens=6, do_sample=False, canonical_inputs=False)
        unset = model.generate(**batch, max_new_tokens=6, do_sample=False, canonical_inputs=False, read_output_as=None)
    assert torch.equal(plain, off) and torch.equal(plain, unset)


def test_sampling_draws_as_transformers_would_and_stays_canonical(saved):
    _, tok, model = saved
    batch = tok(prompts()[1], return_tensors="pt", add_special_tokens=False)
    settings = {"do_sample": True, "temperature": 1.5, "top_k": 50, "max_new_tokens": 20, "canonical_inputs": True}
    torch.manual_seed(7)
    first = model.generate(**batch, **settings)
    torch.manual_seed(7)
    again = model.generate(**batch, **settings)
    assert torch.equal(first, again)
    torch.manual_seed(7)
    direct = canonical_inputs_generate(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=20,
        sampling=SamplingConfig(True, 1.5, 50, None),
    )
    assert torch.equal(first, direct.sequences)
    greedy = model.generate(**batch, max_new_tokens=20, do_sample=False, canonical_inputs=True)
    assert not torch.equal(first, greedy)  # at temperature 1.5 the draws leave the greedy path
    # What was drawn decodes after the prompt, and the text's canonical encoding is what the
    # model read last: its codes start with the prompt's but for the open last one.
    prompt = batch["input_ids"][0].tolist()
    written = tok.expand(first[0, len(prompt) :].tolist(), tok.state_after(prompt)).tolist()
    ids = tok.base(prompts()[1], add_special_tokens=False)["input_ids"] + written
    assert encode_ids(model.codebook_config(), ids).codes.tolist()[: len(prompt) - 1] == prompt[:-1]


def test_a_rewritten_prompt_code_leaves_the_callers_mask_alone(saved):
    _, tok, model = saved
    ids = tok.base(TEXTS[0] + TEXTS[1] * 2, add_special_tokens=False)["input_ids"]
    config = model.codebook_config()
    found = 0
    for cut in range(8, len(ids), 2):
        codes = torch.from_numpy(encode_ids(config, ids[:cut]).codes.astype("int64"))[None]
        mask = torch.ones_like(codes)
        out = canonical_inputs_generate(model, codes, mask, max_new_tokens=2)
        phrase = tok.state_after(codes[0].tolist()).phrase(out.new_codes[0][0]).tolist()
        if encode_ids(config, ids[:cut] + phrase).codes.tolist()[: codes.shape[1]] != codes[0].tolist():
            found += 1  # the first step rewrote the prompt's last code
            assert bool(mask.all())
    assert found > 0


def test_reading_the_answer_as_base_ids_is_rerunning_prompt_codes_and_base_ids(saved):
    _, tok, model = saved
    config = model.codebook_config()
    text = prompts()[1]
    batch = tok(text, return_tensors="pt", add_special_tokens=False)
    out = canonical_inputs_generate(
        model, batch["input_ids"], batch["attention_mask"], max_new_tokens=20, read_as="base_ids"
    )
    prompt = batch["input_ids"][0].tolist()
    codes, chosen = list(prompt), []
    for _ in range(20):
        ids = torch.tensor([codes])
        with torch.no_grad():
            code = int(model(input_ids=ids, **codebook_fields(config, ids, None)).logits[0, -1].argmax())
        chosen.append(code)
        codes += tok.state_after(codes).phrase(code).tolist()
    assert out.new_codes[0] == chosen
    assert any(code >= tok.vocab_size for code in chosen)  # it wrote hypertokens, read back as base ids
    assert out.stats.rewrites == 0
    with torch.no_grad():
        through = model.generate(
            **batch, max_new_tokens=20, do_sample=False, canonical_inputs=True, read_output_as="base_ids"
        )
    assert torch.equal(through, out.sequences)
    with pytest.raises(ModelInputError, match="read_as"):
        canonical_inputs_generate(model, batch["input_ids"], max_new_tokens=2, read_as="bytes")
    for value in ("base_ids", "codes"):
        with pytest.raises(ModelInputError, match="read_output_as is an option of canonical_inputs"):
            model.generate(**batch, max_new_tokens=2, read_output_as=value)
