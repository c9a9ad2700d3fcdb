"""Hypertoken speculation (`zip2zip.generation.speculative`): the same codes as plain greedy
decoding, drafts that stand for the guessed text, and clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from tiny_models import TEXTS
from zip2zip.errors import ModelInputError
from zip2zip.generation.speculative import (
    LookupIndex,
    PhraseIndex,
    _best_hypertokens,
    _cut,
    _Draft,
    _hypertoken_guess,
    _merge_guesses,
    speculative_generate,
)

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-zip2zip"


def left_padded(tok, texts):
    tok.padding_side = "left"
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def repetitive_prompts():
    return [TEXTS[0], TEXTS[1] * 2, "x = 1\n" * 6 + "y = 2\n"]


def test_lookup_index_proposes_what_followed_the_latest_longest_match():
    index = LookupIndex(max_ngram=3)
    index.extend([1, 2, 3, 9, 1, 2, 3, 7, 5, 2, 3])
    assert index.propose(3) == [7, 5, 2]  # "2 3" last came before 7 (the 3-gram "5 2 3" never did)
    index.extend([7])
    assert index.propose(2) == [5, 2]  # "2 3 7" occurred: what followed it
    assert LookupIndex(2).propose(4) == []
    lone = LookupIndex(2)
    lone.extend([4, 5, 6])
    assert lone.propose(4) == []  # no n-gram occurred before


def test_a_draft_stands_for_its_guess_and_uses_the_codebook(tok):
    ids = tok.base(TEXTS[0], add_special_tokens=False)["input_ids"]
    state = tok.state_after(tok.encode(TEXTS[0], add_special_tokens=False))
    phrases = PhraseIndex()
    phrases.update(state)
    draft = _Draft()
    _cut(state.copy(), phrases, ids, max_codes=len(ids), draft=draft)
    assert sum(draft.lengths) == len(ids)
    assert tok.expand(draft.codes, state.copy()).tolist() == ids
    assert len(draft.codes) < len(ids)  # the text was read before: its phrases are entries
    assert all(code >= tok.vocab_size for code in draft.codes[:3])
    assert draft.installed == sorted(draft.installed)


@pytest.mark.parametrize("drafts", [1, 4, 8])
def test_the_same_codes_as_plain_greedy_decoding(saved, drafts):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=40, do_sample=False)
    out = speculative_generate(
        model, batch["input_ids"], batch["attention_mask"], max_new_tokens=40, num_draft_codes=drafts
    )
    assert torch.equal(out.sequences, plain)
    assert out.stats.proposed > 0 and out.stats.row_passes > 0
    assert out.stats.passes < 40  # some pass accepted at least one draft code
    assert out.stats.accepted > 0


@pytest.mark.parametrize("limit", [1, 2])
def test_shorter_draft_phrases_give_the_same_codes(saved, limit):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=30, do_sample=False)
        looked = model.generate(
            **batch, max_new_tokens=30, do_sample=False, prompt_lookup_num_tokens=6, max_draft_phrase=limit
        )
    assert torch.equal(looked, plain)


def test_a_draft_cut_keeps_to_its_phrase_limit(tok):
    ids = tok.base(TEXTS[0], add_special_tokens=False)["input_ids"]
    state = tok.state_after(tok.encode(TEXTS[0], add_special_tokens=False))
    phrases = PhraseIndex()
    phrases.update(state)
    for limit, most in ((1, 1), (2, 2), (None, tok.config.max_subtokens)):
        draft = _Draft()
        _cut(state.copy(), phrases, ids, len(ids), draft, max_phrase=limit)
        assert tok.expand(draft.codes, state.copy()).tolist() == ids
        assert max(draft.lengths) == most  # the text was read before: some phrase is as long as allowed
    with pytest.raises(ModelInputError, match="max_draft_phrase"):
        speculative_generate(None, torch.ones(1, 2, dtype=torch.long), max_new_tokens=4, max_draft_phrase=0)


def test_adaptive_drafts_give_the_same_codes_and_propose_no_more(saved):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    runs = {
        adaptive: speculative_generate(
            model, batch["input_ids"], batch["attention_mask"], max_new_tokens=30, num_draft_codes=8, adaptive=adaptive
        )
        for adaptive in (True, False)
    }
    assert torch.equal(runs[True].sequences, runs[False].sequences)
    assert runs[True].stats.proposed < runs[False].stats.proposed  # failed drafts shrank the next ones
    assert runs[True].stats.accepted > 0


def test_no_drafts_is_one_code_a_pass(saved):
    _, tok, model = saved
    batch = left_padded(tok, [TEXTS[1]])
    out = speculative_generate(model, batch["input_ids"], max_new_tokens=12, num_draft_codes=0, eos_token_id=[])
    assert len(out.new_codes[0]) == 12 and out.stats.passes == 11 and out.stats.proposed == 0
    assert out.stats.codes_per_row_pass == 1.0


def test_generate_with_prompt_lookup_runs_it(saved):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    with torch.no_grad():
        for valve in (True, False):
            plain = model.generate(**batch, max_new_tokens=30, do_sample=False, output_hypertokens=valve)
            looked = model.generate(
                **batch, max_new_tokens=30, do_sample=False, output_hypertokens=valve, prompt_lookup_num_tokens=6
            )
            assert torch.equal(looked, plain)
        assert bool((looked[:, batch["input_ids"].shape[1] :] < tok.vocab_size).all())  # the valve held
        out = model.generate(**batch, max_new_tokens=8, prompt_lookup_num_tokens=3, return_dict_in_generate=True)
        assert torch.equal(out.sequences[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_budgets_and_stops(saved):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    free = speculative_generate(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=20, eos_token_id=[])
    assert [len(c) for c in free.new_codes] == [20, 20, 20]
    stop = free.new_codes[0][5]
    stopped = speculative_generate(
        model, batch["input_ids"], batch["attention_mask"], max_new_tokens=20, eos_token_id=stop, pad_token_id=0
    )
    first = free.new_codes[0].index(stop)
    assert stopped.new_codes[0] == free.new_codes[0][: first + 1]
    assert stopped.sequences.shape[1] == batch["input_ids"].shape[1] + max(len(c) for c in stopped.new_codes)
    budget = speculative_generate(
        model, batch["input_ids"], batch["attention_mask"], max_new_tokens=20, eos_token_id=[], max_new_base_tokens=9
    )
    for row, codes in enumerate(budget.new_codes):
        state = tok.state_after(batch["input_ids"][row][batch["attention_mask"][row].bool()])
        assert (
            len(tok.expand(codes, state))
            >= 9
            > len(tok.expand(codes[:-1], tok.state_after(batch["input_ids"][row][batch["attention_mask"][row].bool()])))
        )


def test_bad_requests_get_clear_errors(saved):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    right = batch["attention_mask"].flip(1)
    with pytest.raises(ModelInputError, match="left padding"):
        speculative_generate(model, batch["input_ids"], right, max_new_tokens=4)
    with pytest.raises(ModelInputError, match="max_new_tokens"):
        speculative_generate(model, batch["input_ids"], max_new_tokens=0)
    with pytest.raises(ModelInputError, match=r"\[B, P\]"):
        speculative_generate(model, batch["input_ids"][0], max_new_tokens=4)
    with pytest.raises(ModelInputError, match="greedy"):
        model.generate(**batch, max_new_tokens=4, do_sample=True, prompt_lookup_num_tokens=4)
    with pytest.raises(ModelInputError, match="stop_strings"):
        model.generate(**batch, max_new_tokens=4, prompt_lookup_num_tokens=4, stop_strings=["x"], tokenizer=tok)


def test_the_best_hypertoken_is_the_top_one_starting_with_the_written_id():
    vocab, inf = 5, float("-inf")
    # Slots 0-3 start with base ids 2, 3, 2, 1; slot 3 is not installed at the second position.
    firsts = torch.tensor([[2, 3, 2, 1]])
    logits = torch.tensor(
        [
            [
                [0.0, 0.0, 9.0, 0.0, 0.0, 1.0, 8.0, 3.0, 0.0],  # writes 2: slots 0 and 2 match, 2 ranks higher
                [0.0, 7.0, 0.0, 0.0, 0.0, 5.0, 6.0, 4.0, inf],  # writes 1: slot 3 would match, not installed
                [0.0, 0.0, 0.0, 0.0, 9.0, 5.0, 6.0, 4.0, 1.0],  # writes 4: no slot starts with it
            ]
        ]
    )
    assert _best_hypertokens(logits, firsts, vocab).tolist() == [[vocab + 2, -1, -1]]


def test_a_hypertoken_guess_is_the_rest_of_its_phrase(tok):
    state = tok.state_after(tok.encode(TEXTS[0] * 2, add_special_tokens=False))
    vocab = tok.vocab_size
    longest = max(range(vocab, vocab + state.installed), key=lambda code: len(state.phrase(code)))
    phrase = state.phrase(longest).tolist()
    assert len(phrase) > 2
    assert _hypertoken_guess(state, phrase[0], longest) == phrase[1:]
    assert _hypertoken_guess(state, phrase[0] + 1, longest) == []  # it does not start with the written id
    assert _hypertoken_guess(state, phrase[0], -1) == []  # no hypertoken starts with it
    assert _hypertoken_guess(state, phrase[0], vocab + state.installed) == []  # not installed


def test_both_sources_keep_the_lookup_where_it_agrees_with_the_hypertoken():
    assert _merge_guesses([4, 5, 6, 7], [4, 5]) == [4, 5, 6, 7]
    assert _merge_guesses([4, 9, 6], [4, 5]) == [4, 5]
    assert _merge_guesses([], [4, 5]) == [4, 5]
    assert _merge_guesses([4, 5], []) == [4, 5]


@pytest.mark.parametrize("source", ["hypertokens", "both"])
def test_hypertoken_drafts_give_the_valves_codes(saved, source):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    with torch.no_grad():
        valve = model.generate(**batch, max_new_tokens=60, do_sample=False, output_hypertokens=False)
        drafted = model.generate(
            **batch,
            max_new_tokens=60,
            do_sample=False,
            output_hypertokens=False,
            prompt_lookup_num_tokens=6,
            draft_source=source,
        )
    assert torch.equal(drafted, valve)
    out = speculative_generate(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=60,
        output_hypertokens=False,
        draft_source=source,
    )
    assert torch.equal(out.sequences, valve)
    assert out.stats.accepted > 0  # the tiny model writes its own phrases again


def test_hypertoken_drafts_are_for_the_valve_only(saved):
    _, tok, model = saved
    batch = left_padded(tok, repetitive_prompts())
    with pytest.raises(ModelInputError, match="output_hypertokens=False"):
        speculative_generate(model, batch["input_ids"], max_new_tokens=4, draft_source="hypertokens")
    with pytest.raises(ModelInputError, match="draft_source must be one of"):
        speculative_generate(model, batch["input_ids"], max_new_tokens=4, output_hypertokens=False, draft_source="x")
    with pytest.raises(ModelInputError, match="prompt_lookup_num_tokens"):
        model.generate(**batch, max_new_tokens=4, output_hypertokens=False, draft_source="hypertokens")


def test_the_shipped_valve_accepts_its_own_hypertoken_drafts():
    """The shipped model with hypertokens in the prompt only, drafting from its hypertokens: the
    valve's codes, some drafts accepted, fewer passes than codes."""
    import zip2zip as z
    from zip2zip.modeling import Zip2ZipForCausalLM

    tok = z.Zip2ZipTokenizer.from_pretrained(SHIPPED)
    model = Zip2ZipForCausalLM.from_pretrained(SHIPPED).eval()
    messages = [{"role": "user", "content": "Write a Python function that returns the n-th Fibonacci number."}]
    batch = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        valve = model.generate(**batch, max_new_tokens=48, do_sample=False, output_hypertokens=False)
    out = speculative_generate(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=48,
        output_hypertokens=False,
        draft_source="hypertokens",
    )
    assert torch.equal(out.sequences, valve)
    assert out.stats.accepted >= 2 and out.stats.passes < len(out.new_codes[0]) - 2


def test_the_shipped_model_accepts_drafts_when_it_copies():
    """On the shipped model, a prompt that asks for a copy: the same codes as greedy decoding, in
    fewer passes than codes."""
    import zip2zip as z
    from zip2zip.modeling import Zip2ZipForCausalLM

    tok = z.Zip2ZipTokenizer.from_pretrained(SHIPPED)
    model = Zip2ZipForCausalLM.from_pretrained(SHIPPED).eval()
    source = "def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n"
    messages = [{"role": "user", "content": "Repeat this code exactly:\n```python\n" + source + "```"}]
    batch = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=48, do_sample=False)
    out = speculative_generate(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=48)
    assert torch.equal(out.sequences, plain)
    assert out.stats.accepted >= 5 and out.stats.passes < len(out.new_codes[0]) - 5


def test_the_peers_comparison_runs_every_kind_and_checks_the_lossless_ones(saved):
    """`zip2zip bench generate --peers` on a tiny model: every kind timed on every set, prompt
    lookup at batch size 1 only, and the lossless methods give their plain runs' answers."""
    from zip2zip.evaluation.prompts import GROUNDED_TASKS, grounded_prompts, user_text
    from zip2zip.generation.peers import KINDS, _stop_at, _stops, compare_peers, format_peers

    _, tok, model = saved
    grounded = grounded_prompts(2, chars=300)
    assert grounded[0].startswith(GROUNDED_TASKS[0]) and grounded[1].startswith(GROUNDED_TASKS[1])
    assert "```python\n" in grounded[0] and grounded[0].endswith("\n```")
    printed = []
    results = compare_peers(
        model.base,
        tok.base,
        model,
        tok,
        {"grounded": grounded, "chat": ["Hello hello hello"]},
        batch_sizes=[1, 2],
        max_new_tokens=12,
        repeats=1,
        draft_codes=4,
        lookup_tokens=4,
        progress=printed.append,
    )
    assert set(results["sets"]) == {"grounded/b1", "grounded/b2", "chat/b1", "chat/b2"}
    # Eight kinds at batch 1, seven at 2 (no transformers lookup), on two sets; then a line a row.
    assert sum(line.startswith("  ") for line in printed) == 30 and len(printed) == 30 + 4
    one, two = results["sets"]["grounded/b1"], results["sets"]["grounded/b2"]
    assert set(KINDS) <= set(one) and "base + lookup" not in two and "base + batched lookup" in two
    for row in (one, two):
        # Lossless: speculation gives the zip2zip model's plain answers, the batched lookup the
        # base's, the valve's drafts the valve's.
        assert row["speculation_same_answers"] == 1.0 and row["batched_lookup_same_answers"] == 1.0
        assert row["valve_drafts_same_answers"] == 1.0
        assert 0.0 <= row["valve_same_as_base"] <= 1.0
        assert row["valve_drafts"]["passes"] > 0 and row["speculation"]["passes"] > 0
        # The same answers in no more passes: at least as much text a pass as the plain run.
        per_pass = row["bytes_per_pass"]
        assert per_pass["valve + drafts"] >= per_pass["valve"] > 0
        assert per_pass["zip2zip + speculation"] >= per_pass["zip2zip"] > 0
        assert per_pass["base + batched lookup"] >= per_pass["base"] > 0
        assert all(row[kind]["bytes_per_s"] > 0 and row[kind]["new_tokens"] > 0 for kind in KINDS if kind in row)
        assert row["base + batched lookup"]["new_tokens"] == row["base"]["new_tokens"]
    assert one["lookup_same_answers"] == 1.0
    assert one["ratios"]["base"] == 1.0
    faster = max(one["base + lookup"]["bytes_per_s"], one["base + batched lookup"]["bytes_per_s"])
    assert one["speculation_over_lookup"] == one["zip2zip + speculation"]["bytes_per_s"] / faster
    assert one["valve_drafts_over_lookup"] == one["valve + drafts"]["bytes_per_s"] / faster
    # The read-back kind's answer is what generate() writes with those options.
    chat = user_text(tok.base, "Hello hello hello")
    batch = tok([chat], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, canonical_inputs=True, read_output_as="base_ids")
    codes = _stop_at(out[0, batch["input_ids"].shape[1] :].tolist(), _stops(model, tok))
    state = tok.state_after(batch["input_ids"][0])
    assert results["sets"]["chat/b1"]["zip2zip reading base ids"]["texts"] == [
        tok.decode(codes, state=state, skip_special_tokens=True)
    ]
    table = format_peers(results)
    # Two rows of the grounded set in each of the four tables: the peers', the valve's, the
    # read-back's, passes.
    assert table.count("\n| grounded |") == 8 and "n/a" in table and "The safety valve" in table
    assert "read back as base ids" in table


def test_the_peers_comparison_runs_the_kinds_asked_for(saved):
    """``kinds`` picks what runs (the base always, as every ratio's denominator); the table
    prints n/a for the rest, and an unknown kind is refused by name."""
    from zip2zip.cli.bench import add_arguments
    from zip2zip.generation.peers import KIND_NAMES, compare_peers, format_peers

    _, tok, model = saved
    args = dict(batch_sizes=[2], max_new_tokens=6, repeats=1, draft_codes=4, lookup_tokens=4, progress=lambda _: None)
    results = compare_peers(
        model.base, tok.base, model, tok, {"chat": ["Hello hello hello"]}, kinds=("base + batched lookup",), **args
    )
    row = results["sets"]["chat/b2"]
    assert set(row) & set(KIND_NAMES.values()) == {"base", "base + batched lookup"}
    assert row["batched_lookup_same_answers"] == 1.0 and "speculation_over_lookup" not in row
    assert format_peers(results).count("n/a") >= 6 and "The safety valve" not in format_peers(results)
    with pytest.raises(ValueError, match="unknown kinds"):
        compare_peers(model.base, tok.base, model, tok, {"chat": ["Hi"]}, kinds=("beam",), **args)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    kinds = next(action for action in parser._actions if action.dest == "kinds")
    assert list(kinds.choices) == list(KIND_NAMES)


def test_the_batched_lookup_peer_is_the_base_model_with_accepted_drafts(smollm2_tokenizer):
    """The ``base + batched lookup`` peer on the real SmolLM2: each row of a left-padded batch
    gets the base model's own greedy answer to its prompt alone, and drafts are accepted when the
    answer copies the prompt."""
    from zip2zip.generation.peers import batched_lookup_model
    from zip2zip.sources import SMOLLM2_SOURCE, load_base_model

    base = load_base_model(SMOLLM2_SOURCE).eval()
    model, tok = batched_lookup_model(base, smollm2_tokenizer)
    assert model.config.max_codebook_size == 0
    source = "def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n    return 2 * (width + height)\n"
    prompts = ["Repeat this code exactly:\n```python\n" + source + "```", "What is the capital of France?"]
    texts = [
        smollm2_tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    tok.padding_side = "left"
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = speculative_generate(
            model, batch["input_ids"], batch["attention_mask"], max_new_tokens=40, num_draft_codes=10
        )
        for row, text in enumerate(texts):
            alone = smollm2_tokenizer(text, return_tensors="pt", add_special_tokens=False)
            plain = base.generate(**alone, max_new_tokens=40, do_sample=False)[0, alone["input_ids"].shape[1] :]
            assert out.new_codes[row] == plain.tolist()[: len(out.new_codes[row])] and len(out.new_codes[row]) > 5
    assert out.stats.accepted >= 10 and out.stats.passes < len(out.new_codes[0]) - 10
