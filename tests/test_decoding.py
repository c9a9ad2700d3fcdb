"""The static-cache, CUDA-graph generation loop (`zip2zip.generation.static`), checked on the CPU
against transformers' generate() and a full forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zip2zip as z
from tiny_models import tiny
from zip2zip.errors import ModelInputError
from zip2zip.generation.sampling import SamplingConfig, sample_next
from zip2zip.generation.static import StaticGenerator
from zip2zip.generation.static_loop import buckets
from zip2zip.modeling import Zip2ZipForCausalLM

TEXT = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n" * 6


@pytest.fixture(scope="module")
def pair(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=128)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    torch.manual_seed(2)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    return tok, model


def test_buckets_cover_every_count():
    assert buckets(8) == [0, 1, 2, 4, 8]
    assert buckets(12) == [0, 1, 2, 4, 8, 12]
    for limit in (1, 5, 64):
        sizes = buckets(limit)
        assert all(any(b >= n for b in sizes) for n in range(limit + 1)) and max(sizes) == limit


def test_base_loop_equals_transformers_generate(smollm2_tokenizer):
    base = tiny("llama", vocab=smollm2_tokenizer.vocab_size)
    prompts = ["hello hello hello", "a b"]
    rows = [smollm2_tokenizer(p)["input_ids"] for p in prompts]
    # Left-padded by hand: SmolLM2's GGUF tokenizer has no pad token (transformers < 5.24 then
    # refuses padding=True; 5.24 pads anyway).
    width = max(map(len, rows))
    batch = {
        "input_ids": torch.tensor([[0] * (width - len(r)) + r for r in rows]),
        "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
    }
    expected = base.generate(**batch, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
    generator = StaticGenerator.for_base(base, smollm2_tokenizer, batch_size=3, max_cache_len=32)
    generator.stop_ids = frozenset()  # as generate() above: run the whole budget
    out = generator.generate(rows, max_new_base_tokens=10)
    assert out.tokens == expected[:, batch["input_ids"].shape[1] :].tolist()
    assert out.steps == 9 and out.base_tokens == [10, 10]
    assert out.texts == [smollm2_tokenizer.decode(t) for t in out.tokens]
    again = generator.generate(rows[:1], max_new_base_tokens=4)  # the cache and graphs are reused
    assert again.tokens == [out.tokens[0][:4]]


def test_zip2zip_loop_equals_model_generate(pair):
    tok, model = pair
    prompts = [TEXT[:150], "x = 1\ny = 2\nx = 1\n"]
    batch = tok(prompts, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        expected = model.generate(**batch, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    generator = StaticGenerator.for_zip2zip(model, tok, batch_size=2, max_cache_len=96)
    generator.stop_ids = frozenset()
    out = generator.generate([tok.encode(p) for p in prompts], max_new_base_tokens=12)
    for row in range(2):
        new = expected[row, batch["input_ids"].shape[1] :].tolist()
        assert out.tokens[row] == new[: len(out.tokens[row])]
        prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert out.base_tokens[row] == len(tok.expand(out.tokens[row], tok.state_after(prompt)))
        assert out.texts[row] == tok.decode(out.tokens[row], state=tok.state_after(prompt))


SAMPLINGS = [
    SamplingConfig(do_sample=True, temperature=0.8, top_k=20, top_p=0.9),
    SamplingConfig(do_sample=True, temperature=1.3),
    SamplingConfig(do_sample=True, top_p=0.5),
]


def hf_sampling(config: SamplingConfig) -> dict:
    """The same settings for transformers' generate() (top_k=0: no top-k, not its default 50)."""
    return {
        "do_sample": True,
        "temperature": config.temperature,
        "top_k": config.top_k or 0,
        "top_p": config.top_p or 1.0,
    }


@pytest.mark.parametrize("config", SAMPLINGS, ids=["k-p-t", "temperature", "top-p"])
def test_base_loop_samples_what_transformers_samples(smollm2_tokenizer, config):
    base = tiny("llama", vocab=smollm2_tokenizer.vocab_size)
    with torch.no_grad():  # peaked distributions, where the temperature and the cut-offs change the draws
        base.get_output_embeddings().weight.mul_(20)
    rows = [smollm2_tokenizer(p)["input_ids"] for p in ("hello hello hello", "one two")]
    width = max(map(len, rows))
    batch = {
        "input_ids": torch.tensor([[0] * (width - len(r)) + r for r in rows]),
        "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
    }
    generator = StaticGenerator.for_base(base, smollm2_tokenizer, batch_size=2, max_cache_len=32, sampling=config)
    generator.stop_ids = frozenset()
    draws = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        expected = base.generate(**batch, max_new_tokens=12, eos_token_id=None, pad_token_id=0, **hf_sampling(config))
        out = generator.generate(rows, max_new_base_tokens=12, seed=seed)
        assert out.tokens == expected[:, width:].tolist()
        draws.append(out.tokens)
    assert draws[0] != draws[1]  # the seed matters
    assert generator.generate(rows, max_new_base_tokens=12, seed=1).tokens == draws[1]  # and repeats


@pytest.mark.parametrize("config", SAMPLINGS, ids=["k-p-t", "temperature", "top-p"])
def test_zip2zip_loop_samples_what_model_generate_samples(pair, config):
    tok, model = pair
    prompts = [TEXT[:150], "x = 1\ny = 2\nx = 1\n"]
    batch = tok(prompts, padding=True, padding_side="left", return_tensors="pt")
    generator = StaticGenerator.for_zip2zip(model, tok, batch_size=2, max_cache_len=96, sampling=config)
    generator.stop_ids = frozenset()
    hyper = 0
    for seed in (0, 3):
        torch.manual_seed(seed)
        with torch.no_grad():
            expected = model.generate(
                **batch, max_new_tokens=12, eos_token_id=None, pad_token_id=0, **hf_sampling(config)
            )
        out = generator.generate([tok.encode(p) for p in prompts], max_new_base_tokens=12, seed=seed)
        for row in range(2):
            new = expected[row, batch["input_ids"].shape[1] :].tolist()
            assert out.tokens[row] == new[: len(out.tokens[row])] and out.tokens[row]
            hyper += sum(code >= tok.vocab_size for code in out.tokens[row])
            prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()]
            assert out.texts[row] == tok.decode(out.tokens[row], state=tok.state_after(prompt))
    if config.top_k:  # among the 20 largest logits: hypertokens drawn too (over all 49k ids, rarely)
        assert hyper > 0


def test_sampling_settings_are_checked_and_greedy_is_the_argmax():
    for bad in ({"temperature": 0.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ModelInputError, match=next(iter(bad))):
            SamplingConfig(do_sample=True, **bad)
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, -1.0, 0.0, 4.0]])
    assert sample_next(logits, SamplingConfig()).tolist() == [1, 0]
    torch.manual_seed(0)
    narrow = [sample_next(logits, SamplingConfig(do_sample=True, top_k=2)).tolist() for _ in range(200)]
    assert {tuple(n) for n in narrow} <= {(1, 0), (3, 0), (1, 3), (3, 3)}  # only the two largest of each row
    assert len({n[0] for n in narrow}) == 2
    nucleus = [sample_next(logits, SamplingConfig(do_sample=True, top_p=0.01)).tolist() for _ in range(50)]
    assert all(n == [1, 0] for n in nucleus)  # a tiny nucleus keeps the largest logit only


def test_forced_hypertoken_stream_matches_a_full_forward(pair):
    """Feeding a compressed text's codes step by step: every step's greedy choice is the argmax
    of a full forward pass over the same codes, so new entries, positions, installed counts,
    the cache and the mask all agree with the reference path."""
    tok, model = pair
    codes = tok.encode(TEXT)
    prompt, forced = codes[:20], codes[20:]
    assert sum(c >= tok.vocab_size for c in forced) >= 20
    # Row 1 reads KwKwK codes (a run of one token): their steps run serially.
    runs = tok.encode("x = " + "a" * 200)
    kwkwk = kwkwk_positions(tok, runs)
    assert kwkwk and kwkwk[-1] > 5
    generator = StaticGenerator.for_zip2zip(model, tok, batch_size=2, max_cache_len=len(codes) + 4)
    out = generator.generate([prompt, runs[:3]], max_new_base_tokens=10_000, forced=[forced, runs[3:]])
    assert out.tokens == [forced, runs[3:]]
    assert out.base_tokens[0] == len(tok.expand(forced, tok.state_after(prompt)))
    batch = tok([TEXT], return_tensors="pt")
    assert batch["input_ids"][0].tolist() == codes
    with torch.no_grad():
        logits = model(**batch).logits[0]
    for step, choice in enumerate(out.greedy[0]):
        row = logits[len(prompt) - 1 + step]
        assert row[choice] >= row.max() - 1e-4, f"step {step}"
    assert out.kv_cache_bytes == out.kv_bytes_per_position * (len(prompt) + out.steps)
    with torch.no_grad():
        logits = model(**tok(["x = " + "a" * 200], return_tensors="pt")).logits[0]
    for step, choice in enumerate(out.greedy[1]):
        row = logits[3 - 1 + step]
        assert row[choice] >= row.max() - 1e-4, f"KwKwK row, step {step}"


def kwkwk_positions(tok, codes):
    """Indices of codes that name the entry their own reading creates."""
    state, found = z.CodecState(tok.config), []
    for i, code in enumerate(codes):
        if code - tok.vocab_size == state.installed:
            found.append(i)
        state.feed_codes([code])
    return found


def test_rows_stop_at_the_generation_configs_eos(pair):
    """The stop ids come from generation_config (SmolLM2's GGUF tokenizer names <|im_start|> as
    its EOS; its generation config, what generate() uses, says <|im_end|>)."""
    tok, model = pair
    generator = StaticGenerator.for_zip2zip(model, tok, batch_size=1, max_cache_len=64)
    assert generator.stop_ids == {model.generation_config.eos_token_id}
    free = generator.generate([tok.encode("a b c")], max_new_base_tokens=8)
    stop = free.tokens[0][2]
    first = free.tokens[0].index(stop)
    generator.stop_ids = frozenset({stop})  # that code now ends the row
    stopped = generator.generate([tok.encode("a b c")], max_new_base_tokens=8)
    assert stopped.tokens[0] == free.tokens[0][:first] and stopped.steps == first


def test_bad_requests_raise(pair):
    tok, model = pair
    generator = StaticGenerator.for_zip2zip(model, tok, batch_size=1, max_cache_len=16)
    with pytest.raises(ValueError, match="1 to 1 prompts"):
        generator.generate([[1], [2]], max_new_base_tokens=2)
    with pytest.raises(ValueError, match="exceed max_cache_len"):
        generator.generate([[1] * 10], max_new_base_tokens=10)
    with pytest.raises(ValueError, match="at least one id"):
        generator.generate([[]], max_new_base_tokens=2)
    with pytest.raises(z.InvalidCodeError):
        generator.generate([[1, tok.vocab_size + 5]], max_new_base_tokens=2)
    with pytest.raises(ValueError, match="cuda_graphs=True"):
        StaticGenerator.for_zip2zip(model, tok, batch_size=1, max_cache_len=16, cuda_graphs=True)


def test_codec_batch_steps_rows_together(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    streams = [tok.encode(TEXT), tok.encode(TEXT[::-1])]
    batch = z.CodecBatch([z.CodecState(tok.config), z.CodecState(tok.config)])
    single = [z.CodecState(tok.config), z.CodecState(tok.config)]
    for t in range(min(map(len, streams))):
        codes = np.array([streams[0][t], streams[1][t]])
        lengths, installed, rows, slots, phrases, phrase_lengths = batch.step(codes)
        created = []
        for row in range(2):
            ids, new = single[row].feed_codes([codes[row]])
            assert lengths[row] == len(ids) and installed[row] == single[row].installed
            created += [(row, int(code) - tok.vocab_size, single[row].phrase(int(code)).tolist()) for code in new]
        got = [(int(r), int(s), p[:n].tolist()) for r, s, p, n in zip(rows, slots, phrases, phrase_lengths)]
        assert got == created
    assert [batch.state(i) for i in range(2)] == single
    before = [batch.state(i) for i in range(2)]
    with pytest.raises(z.InvalidCodeError, match="sequence 1"):
        batch.step([1, tok.vocab_size + 63])
    assert [batch.state(i) for i in range(2)] == before  # nothing changed, not even row 0
    with pytest.raises(ValueError, match="one code per row"):
        batch.step([1])
    with pytest.raises(IndexError):
        batch.state(2)
    with pytest.raises(z.ConfigError):
        z.CodecBatch([z.CodecState(tok.config), z.CodecState(z.CodebookConfig(tok.vocab_size, 8, 4))])


def test_bench_generate_runs_base_against_zip2zip(smollm2_tokenizer, tmp_path, capsys):
    """`zip2zip bench generate --model DIR` on a tiny saved model: both loops run, the report
    and its JSON are consistent with what the generators produced."""
    import json

    from zip2zip.cli import main

    base_dir, model_dir = tmp_path / "base", tmp_path / "model"
    tiny("llama", vocab=smollm2_tokenizer.vocab_size).save_pretrained(base_dir)
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    Zip2ZipForCausalLM.from_base(base_dir, tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "generate",
                "--model",
                str(model_dir),
                "--batch-sizes",
                "2",
                "--max-new-tokens",
                "6",
                "--prompts-per-set",
                "3",
                "--long-prompt-tokens",
                "300",
                "--repeats",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "| code | 2 |" in printed and "| chat | 2 |" in printed and "| code corpus |" in printed
    for key in ("code/b2", "chat/b2"):
        row = report["sets"][key]
        for kind in ("base", "zip2zip"):
            r = row[kind]
            assert r["calls"] == 2 and len(r["texts"]) == 3  # 3 prompts in batches of 2
            assert r["bytes"] == sum(len(t.encode()) for t in r["texts"]) > 0
            assert 0 < r["base_tokens"] <= 3 * 6 + 3 * 3  # budget (a last code may overshoot by S - 1)
        assert row["speedup"] == pytest.approx(row["zip2zip"]["bytes_per_s"] / row["base"]["bytes_per_s"])
    long = report["long_prompt"]
    assert long["base_tokens"] == 300 and long["codes"] < 300
    assert long["kv_ratio"] == pytest.approx(300 / long["codes"])
    assert main(["bench", "generate"]) == 2  # neither --model nor --shapes
    # The valve with the marginal's token: the zip2zip loop writes base ids only, and says so.
    valve_out = tmp_path / "valve.json"
    args = ["bench", "generate", "--model", str(model_dir), "--batch-sizes", "2", "--max-new-tokens", "6"]
    args += ["--prompts-per-set", "2", "--long-prompt-tokens", "0", "--repeats", "1", "--json", str(valve_out)]
    assert main([*args, "--valve", "--marginal"]) == 0
    valve = json.loads(valve_out.read_text())
    assert valve["valve"] and valve["marginal_first_token"]
    for row in valve["sets"].values():
        assert row["zip2zip"]["base_tokens_per_code"] == 1.0
    assert "base ids only (the valve), the marginal's first token" in capsys.readouterr().out
    assert main(["bench", "generate", "--model", str(model_dir), "--peers", "--valve"]) == 2
