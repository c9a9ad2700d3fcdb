"""zip2zip.files: saving under a write limit (standing in for a full disk) leaves every folder and
file as it was, with a typed error; nothing half-written is left behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zip2zip.files import SaveError, staged_save, write_atomic

LIMIT = 64 * 1024  # bytes a child process may write to one file


def limited(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python whose files may not grow past LIMIT bytes (as ``ulimit -f``;
    SIGXFSZ ignored, so a write past it fails with EFBIG instead of killing the process)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "page.html"
    write_atomic(path, "old")
    result = limited(
        f"""
        from zip2zip.files import SaveError, write_atomic
        try:
            write_atomic({str(path)!r}, "x" * {4 * LIMIT})
        except SaveError as error:
            print("SaveError", error)
        """,
        tmp_path,
    )
    assert result.stdout.startswith("SaveError could not write"), result.stderr
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["page.html"]
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"


def test_staged_save_moves_everything_in_or_nothing(tmp_path):
    folder = tmp_path / "out"
    with staged_save(folder) as stage:
        (stage / "a.txt").write_text("a1")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("b1")
    assert snapshot(folder) == {"a.txt": b"a1", "sub/b.txt": b"b1"}
    with pytest.raises(SaveError, match="could not save to") as error:
        with staged_save(folder) as stage:
            (stage / "a.txt").write_text("a2")
            raise OSError(27, "File too large")
    assert isinstance(error.value.__cause__, OSError)
    assert snapshot(folder) == {"a.txt": b"a1", "sub/b.txt": b"b1"}  # nothing moved in, no stage left
    with pytest.raises(ValueError, match="bad save"):
        with staged_save(folder) as stage:
            raise ValueError("bad save")
    assert sorted(os.listdir(folder)) == ["a.txt", "sub"]
    new = tmp_path / "new" / "deeper"
    with pytest.raises(SaveError):
        with staged_save(new) as stage:
            raise OSError(28, "No space left on device")
    assert not new.exists()  # a failed save into a new folder leaves no empty folder behind


def test_a_tokenizer_save_that_fails_leaves_the_folder_loadable(tmp_path, smollm2_tokenizer):
    import zip2zip as z

    folder = tmp_path / "tok"
    z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64).save_pretrained(folder)
    before = snapshot(folder)
    result = limited(
        f"""
        import zip2zip as z
        from zip2zip.files import SaveError
        tok = z.Zip2ZipTokenizer.from_pretrained({str(folder)!r})
        try:
            tok.save_pretrained({str(folder)!r})
        except SaveError as error:
            print("SaveError", error)
        """,
        tmp_path,
    )
    assert result.stdout.startswith(f"SaveError could not save to {folder}"), result.stderr
    assert snapshot(folder) == before
    assert z.Zip2ZipTokenizer.from_pretrained(folder).config.max_codebook_size == 64


def test_a_model_save_that_fails_leaves_the_folder_loadable(tmp_path, smollm2_tokenizer):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    import zip2zip as z
    from zip2zip.modeling import Zip2ZipForCausalLM

    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=64)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
    model = Zip2ZipForCausalLM.from_base(str(tmp_path / "base"), tok).add_lora(r=2)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    before = snapshot(folder)
    result = limited(
        f"""
        from zip2zip.files import SaveError
        from zip2zip.modeling import Zip2ZipForCausalLM
        model = Zip2ZipForCausalLM.from_pretrained({str(folder)!r}, is_trainable=True)
        for parameter in model.hyper.parameters():
            parameter.data.add_(1.0)
        model.hyper.register_buffer("padding_for_the_test", __import__("torch").zeros({LIMIT}))
        try:
            model.save_pretrained({str(folder)!r})
        except SaveError as error:
            print("SaveError", error)
        """,
        tmp_path,
    )
    assert result.stdout.startswith(f"SaveError could not save to {folder}"), result.stderr
    assert snapshot(folder) == before  # neither a cut file nor a mix of old and new
    Zip2ZipForCausalLM.from_pretrained(folder)


def test_show_html_that_cannot_be_written_keeps_the_old_page(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("old page")
    text = "the cat sat on the mat " * 2000  # a page well over the limit
    result = limited(
        f"""
        import sys
        from zip2zip.cli import main
        sys.exit(main(["show", "--text", {text!r}, "--html", {str(page)!r}, "--tokenizer",
                       {str(Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-zip2zip")!r}]))
        """,
        tmp_path,
    )
    assert result.returncode == 2 and "could not write" in result.stderr and "Traceback" not in result.stderr
    assert page.read_text() == "old page" and sorted(os.listdir(tmp_path)) == ["page.html"]
