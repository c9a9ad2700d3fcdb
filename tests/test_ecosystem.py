"""Where transformers users reach for a model: the Auto classes, ``pipeline("text-generation")``,
transformers' own streamers, and ``generate()`` from codes alone. Each text is compared exactly
with ``model.generate()`` and ``tokenizer.decode(new_codes, state=state_after(prompt))``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer, TextStreamer, pipeline

import zip2zip as z
from tiny_models import TEXTS
from zip2zip.modeling import Zip2ZipForCausalLM

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-zip2zip"
PROMPT = TEXTS[0]
NEW = 24


def reference(tok, model, prompt: str, new: int = NEW) -> tuple[torch.Tensor, str]:
    """The generated codes of greedy ``generate()`` and their text, decoded after the prompt."""
    batch = tok([prompt], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=new, do_sample=False)
    generated = output[0, batch["input_ids"].shape[1] :]
    state = tok.state_after(batch["input_ids"][0])
    return generated, tok.decode(generated, state=state, skip_special_tokens=True)


def test_auto_classes_load_a_saved_folder(saved):
    folder, tok, model = saved
    auto_tok = AutoTokenizer.from_pretrained(folder)
    auto_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert isinstance(auto_tok, z.Zip2ZipTokenizer) and auto_tok.config == tok.config
    assert isinstance(auto_model, Zip2ZipForCausalLM)
    batch = tok(TEXTS, padding=True, return_tensors="pt", padding_side="left")
    assert torch.equal(
        auto_tok(TEXTS, padding=True, return_tensors="pt", padding_side="left")["input_ids"], batch["input_ids"]
    )
    with torch.no_grad():
        assert torch.equal(auto_model(**batch).logits, model(**batch).logits)
    # The folder's top holds no base tokenizer files: they are in base_tokenizer/.
    assert not (folder / "tokenizer.json").exists() and (folder / "base_tokenizer" / "tokenizer.json").is_file()


def test_without_zip2zip_transformers_refuses_the_folder(saved):
    """Plain transformers (zip2zip made unimportable) does not return the base tokenizer from a
    zip2zip folder, and its model error names zip2zip."""
    folder = saved[0]
    code = textwrap.dedent(
        f"""
        import sys
        class NoZip2Zip:
            def find_spec(self, name, path=None, target=None):
                if name == "zip2zip" or name.startswith("zip2zip."):
                    raise ImportError("zip2zip is not installed here")
        sys.meta_path.insert(0, NoZip2Zip())
        from transformers import AutoModelForCausalLM, AutoTokenizer
        for load in (AutoTokenizer.from_pretrained, AutoModelForCausalLM.from_pretrained):
            try:
                loaded = load({str(folder)!r})
            except Exception as error:
                print(load.__self__.__name__, "refused:", str(error).splitlines()[0])
            else:
                print(load.__self__.__name__, "loaded", type(loaded).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("AutoTokenizer refused:") for line in lines), result.stdout
    assert any(line.startswith("AutoModelForCausalLM refused:") and "zip2zip" in line for line in lines), result.stdout


def test_pipeline_gives_the_generated_text(saved):
    folder, tok, model = saved
    generated, expected = reference(tok, model, PROMPT)
    assert int((generated >= tok.vocab_size).sum()) > 0  # hypertokens: the text needs the prompt's state
    generate = pipeline("text-generation", model=model, tokenizer=tok)
    new = generate(PROMPT, max_new_tokens=NEW, do_sample=False, return_full_text=False)
    assert new[0]["generated_text"] == expected
    full = generate(PROMPT, max_new_tokens=NEW, do_sample=False)
    assert full[0]["generated_text"] == PROMPT + expected


def test_pipeline_with_chat_messages(saved):
    folder, tok, model = saved
    messages = [{"role": "user", "content": PROMPT}]
    batch = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=NEW, do_sample=False)
    state = tok.state_after(batch["input_ids"][0])
    expected = tok.decode(output[0, batch["input_ids"].shape[1] :], state=state, skip_special_tokens=True)
    generate = pipeline("text-generation", model=model, tokenizer=tok)
    answer = generate(messages, max_new_tokens=NEW, do_sample=False)[0]["generated_text"]
    assert answer == [*messages, {"role": "assistant", "content": expected}]
    assert (
        generate(messages, max_new_tokens=NEW, do_sample=False, return_full_text=False)[0]["generated_text"] == expected
    )


class Capture(TextStreamer):
    """transformers' TextStreamer, keeping what it would print."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.printed = ""

    def on_finalized_text(self, text, stream_end=False):
        self.printed += text


@pytest.mark.parametrize("skip_prompt", [True, False])
def test_transformers_streamers_print_the_generated_text(saved, skip_prompt):
    folder, tok, model = saved
    generated, expected = reference(tok, model, PROMPT)
    batch = tok([PROMPT], return_tensors="pt")
    streamer = Capture(tok, skip_prompt=skip_prompt, skip_special_tokens=True)
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=NEW, do_sample=False, streamer=streamer)
    assert streamer.printed == (expected if skip_prompt else PROMPT + expected)
    assert streamer.tokenizer is tok  # given back after the call
    iterator = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=NEW, do_sample=False, streamer=iterator)
    assert "".join(iterator) == expected


def test_generate_from_codes_alone_equals_generate_from_the_tokenizer_output(saved):
    """pipeline() passes input_ids and attention_mask only: the codebook fields are read from
    the codes, for left-padded rows too."""
    folder, tok, model = saved
    batch = tok(TEXTS, padding=True, return_tensors="pt", padding_side="left")
    with torch.no_grad():
        full = model.generate(**batch, max_new_tokens=8, do_sample=False)
        alone = model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=8, do_sample=False
        )
        positional = model.generate(
            batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=8, do_sample=False
        )
    assert torch.equal(full, alone) and torch.equal(full, positional)


def test_read_codes_gives_the_encoding_of_any_code_stream(tok):
    ids = np.array(tok.base(PROMPT, add_special_tokens=False)["input_ids"], dtype=np.uint32)
    encoding = tok.encode_ids(ids)
    assert z.read_codes(tok.config, encoding.codes) == encoding  # canonical codes: the encoder's arrays
    # Not canonical: every base id alone, then a hypertoken that reading them made.
    codes = [int(i) for i in ids[:6]] + [tok.vocab_size]
    read = z.read_codes(tok.config, codes)
    state = tok.state_after(codes)
    assert read.num_entries == state.installed and list(read.installed)[-1] == state.installed
    table, lengths = state.phrases()
    assert np.array_equal(read.codebook, table) and np.array_equal(read.codebook_lengths, lengths)
    with pytest.raises(z.InvalidCodeError):
        z.read_codes(tok.config, [tok.vocab_size + 5])


def test_decode_takes_what_transformers_passes(saved):
    folder, tok, model = saved
    generated, expected = reference(tok, model, PROMPT)
    code = int(tok.encode("hello")[0])
    assert tok.decode(code) == tok.decode([code])  # one code, as TextStreamer passes it
    # Codes a recent generate() wrote decode after their prompt without a state (pipeline's way),
    # as a tensor or a list, with transformers' keywords.
    assert tok.decode(generated, skip_special_tokens=True) == expected
    assert tok.decode(generated.tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=False) == expected
    assert tok.batch_decode([tok.encode(PROMPT)], clean_up_tokenization_spaces=False) == [
        tok.decode(tok.encode(PROMPT))
    ]


def test_the_shipped_model_in_the_pipeline():
    """The committed model through the Auto classes and pipeline(), offline."""
    tok = AutoTokenizer.from_pretrained(SHIPPED)
    model = AutoModelForCausalLM.from_pretrained(SHIPPED).eval()
    prompt = "def add(a, b):\n    return a + b\n\ndef add3(a, b, c):\n    return"
    generated, expected = reference(tok, model, prompt, new=16)
    generate = pipeline("text-generation", model=model, tokenizer=tok)
    assert generate(prompt, max_new_tokens=16, do_sample=False, return_full_text=False)[0]["generated_text"] == expected
    streamer = Capture(tok, skip_prompt=True, skip_special_tokens=True)
    batch = tok([prompt], return_tensors="pt")
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=16, do_sample=False, streamer=streamer)
    assert streamer.printed == expected and "+" in expected
