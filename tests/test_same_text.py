"""The same-text mode of ``zip2zip bench generate`` (`zip2zip.generation.same_text`): both models
produce the base model's answers, the zip2zip model as codes that stand for them."""

from __future__ import annotations

from tiny_models import TEXTS
from zip2zip.generation.same_text import compare_same_text, format_same_text, reference_codes


def test_reference_codes_stand_for_the_text_and_use_the_prompts_entries(tok):
    prompt = tok.encode(TEXTS[0], add_special_tokens=False)
    ids = tok.base(TEXTS[0], add_special_tokens=False)["input_ids"]
    codes = reference_codes(tok, prompt, ids)
    assert tok.expand(codes, tok.state_after(prompt)).tolist() == ids
    assert len(codes) < len(ids) and max(codes) >= tok.vocab_size  # the prompt's phrases are entries
    fresh = reference_codes(tok, [], ids)  # from an empty codebook: the encoder's own codes
    assert tok.expand(fresh).tolist() == ids
    assert fresh == list(tok.encode_ids(ids).codes)


def test_both_models_produce_the_same_text(saved):
    _, tok, model = saved
    printed: list[str] = []
    prompts = ["Hello hello hello", TEXTS[1][:80], "x = 1\n" * 4]
    results = compare_same_text(
        model.base,
        tok.base,
        model,
        tok,
        {"code": prompts},
        batch_sizes=[1, 2],
        max_new_tokens=16,
        repeats=1,
        progress=printed.append,
    )
    assert set(results["sets"]) == {"code/b1", "code/b2"} and len(printed) == 2
    for row in results["sets"].values():
        assert row["same_text"] is True and row["prompts"] >= 1
        assert row["base"]["texts"] == row["zip2zip"]["texts"] and row["base"]["bytes"] > 0
        assert row["compression"] >= 1.0
        assert row["zip2zip"]["tokens"] <= row["base"]["tokens"] and row["zip2zip"]["steps"] <= row["base"]["steps"]
    table = format_same_text(results)
    assert table.count("\n| code |") == 2 and "| yes |" in table
