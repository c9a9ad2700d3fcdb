"""peft composes with Zip2ZipForCausalLM: LoRA on the base inside the wrapper trains, saves as
config + encoders + adapter, and loads back bit for bit with the base from its source."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import zip2zip as z
from tiny_models import FAMILIES, TEXTS, tiny
from zip2zip.modeling import ADAPTER_FOLDER, ENCODERS_FILE, Zip2ZipForCausalLM, lora_target_modules


@pytest.fixture(scope="module")
def base_folder(smollm2_tokenizer, tmp_path_factory):
    """A tiny random Llama of SmolLM2's vocabulary saved as a folder: the base's source."""
    folder = tmp_path_factory.mktemp("base")
    tiny("llama", vocab=smollm2_tokenizer.vocab_size).save_pretrained(folder)
    return folder


def train(model, batch, steps):
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_lora_trains_saves_and_loads_with_the_base_from_its_source(smollm2_tokenizer, base_folder, tmp_path):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)
    model = Zip2ZipForCausalLM.from_base(base_folder, tok)
    assert model.config.base_source == str(base_folder.resolve())
    frozen = {k: v.clone() for k, v in model.base.state_dict().items()}
    model.add_lora(r=4)
    assert model.has_adapter
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("hyper.") for name in trainable)
    assert any(name.startswith("hyper.") for name in trainable) and any("lora_B" in name for name in trainable)

    batch = tok(TEXTS, padding=True, return_tensors="pt")
    model.train()
    losses = train(model, batch, steps=8)
    assert losses[-1] < losses[0] * 0.8, losses
    # The base weights are untouched; LoRA and the encoders moved.
    lora_weights = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in model.base.state_dict().items()
    }
    assert all(torch.equal(lora_weights[k], v) for k, v in frozen.items())
    assert any(v.abs().sum() > 0 for k, v in model.base.state_dict().items() if "lora_B" in k)
    assert model.hyper.output_encoder.project_out.weight.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "run")
    files = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert ENCODERS_FILE in files and f"{ADAPTER_FOLDER}/adapter_config.json" in files
    assert "model.safetensors" not in files  # the base's weights are not copied
    saved_bytes = sum(p.stat().st_size for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert saved_bytes < (base_folder / "model.safetensors").stat().st_size

    loaded = Zip2ZipForCausalLM.from_pretrained(tmp_path / "run").eval()
    assert loaded.has_adapter
    assert not any(p.requires_grad for name, p in loaded.named_parameters() if "lora_" in name)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, expected)
    # It generates, and trains again when asked to.
    prompt = tok(["def f(x):"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = loaded.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 4)
    again = Zip2ZipForCausalLM.from_pretrained(tmp_path / "run", is_trainable=True)
    assert any(p.requires_grad for name, p in again.named_parameters() if "lora_" in name)
    # An explicit base model replaces the recorded source.
    explicit = Zip2ZipForCausalLM.from_pretrained(
        tmp_path / "run", base_model=tiny("llama", vocab=tok.vocab_size)
    ).eval()
    with torch.no_grad():
        assert torch.equal(explicit(**batch).logits, expected)
    # Merged for inference: no adapter left, the same logits up to rounding.
    explicit.merge_lora()
    assert not explicit.has_adapter and not any("lora_" in name for name, _ in explicit.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(explicit(**batch).logits, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no adapter"):
        explicit.merge_lora()


def test_adapter_folders_that_cannot_load_raise(smollm2_tokenizer, base_folder, tmp_path):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    model = Zip2ZipForCausalLM.from_base(base_folder, tok).add_lora(r=2)
    with pytest.raises(ValueError, match="already has a peft adapter"):
        model.add_lora()
    model.save_pretrained(tmp_path / "good")

    # The base's source has moved.
    (tmp_path / "moved").mkdir()
    for name in ("config.json", ENCODERS_FILE):
        (tmp_path / "moved" / name).write_bytes((tmp_path / "good" / name).read_bytes())
    os.symlink(tmp_path / "good" / ADAPTER_FOLDER, tmp_path / "moved" / ADAPTER_FOLDER)
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    config["base_source"] = str(tmp_path / "nowhere")
    (tmp_path / "moved" / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "moved")

    # Encoder weights missing or of another shape.
    weights = load_file(tmp_path / "good" / ENCODERS_FILE)
    save_file({k: v for k, v in weights.items() if "project_out" not in k}, tmp_path / "moved" / ENCODERS_FILE)
    config["base_source"] = str(base_folder)
    (tmp_path / "moved" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "moved")
    save_file(
        {k: v[..., :1].contiguous() if "positions" in k else v for k, v in weights.items()},
        tmp_path / "moved" / ENCODERS_FILE,
    )
    with pytest.raises(ValueError, match="do not match"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "moved")

    # No adapter next to the encoders.
    os.unlink(tmp_path / "moved" / ADAPTER_FOLDER)
    save_file(weights, tmp_path / "moved" / ENCODERS_FILE)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "moved")

    # A base built in-process has no source: saving the adapter alone would lose it.
    orphan = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).add_lora(r=2)
    assert orphan.config.base_source is None
    with pytest.raises(ValueError, match="base_source"):
        orphan.save_pretrained(tmp_path / "orphan")
    assert not (tmp_path / "orphan").exists()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_default_lora_targets_exist_in_every_family(family):
    base = tiny(family)
    model = Zip2ZipForCausalLM.from_base(
        base, type("Codec", (), {"config": z.CodebookConfig(base.config.vocab_size, 8, 4)})()
    )
    targets = lora_target_modules(base.config.model_type)
    assert isinstance(targets, list)
    model.add_lora(r=2)
    adapted = {name.split(".")[-1] for name, module in model.base.named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(targets)


def test_tied_encoders_save_once_and_load(smollm2_tokenizer, base_folder, tmp_path):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    model = Zip2ZipForCausalLM.from_base(base_folder, tok, tied_encoders=True).add_lora(r=2).eval()
    torch.nn.init.normal_(model.hyper.input_encoder.project_out.weight, std=0.05)
    model.save_pretrained(tmp_path)
    loaded = Zip2ZipForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.hyper.input_encoder is loaded.hyper.output_encoder
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("cut", [ENCODERS_FILE, f"{ADAPTER_FOLDER}/adapter_model.safetensors", "encoders-shape"])
def test_a_failed_load_leaves_the_callers_base_as_it_was(smollm2_tokenizer, base_folder, tmp_path, cut):
    """from_pretrained(folder, base_model=base) with a cut-short or mismatched file raises an error
    that names the file, and the caller's base keeps its modules and its logits (the adapter
    used to be injected before the encoders were read)."""
    import shutil

    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import AutoModelForCausalLM

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    model = Zip2ZipForCausalLM.from_base(base_folder, tok).add_lora(r=2)
    for name, parameter in model.base.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=1.0)  # an adapter that moves the logits
    model.save_pretrained(tmp_path / "good")
    shutil.copytree(tmp_path / "good", tmp_path / "bad")
    if cut == "encoders-shape":
        weights = load_file(tmp_path / "good" / ENCODERS_FILE)
        save_file({k: v for k, v in weights.items() if "project_out" not in k}, tmp_path / "bad" / ENCODERS_FILE)
        message = "do not match"
    else:
        path = tmp_path / "bad" / cut
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        message = "not a valid safetensors file"
    base = AutoModelForCausalLM.from_pretrained(base_folder).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = base(input_ids=ids).logits.clone()
    with pytest.raises(ValueError, match=message) as error:
        Zip2ZipForCausalLM.from_pretrained(tmp_path / "bad", base_model=base)
    if cut != "encoders-shape":
        assert os.path.basename(cut) in str(error.value)
    assert not any(isinstance(m, BaseTunerLayer) for m in base.modules())
    with torch.no_grad():
        assert torch.equal(base(input_ids=ids).logits, before)
    # the good folder still loads onto the same base afterwards
    loaded = Zip2ZipForCausalLM.from_pretrained(tmp_path / "good", base_model=base)
    assert loaded.has_adapter
