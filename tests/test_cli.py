"""The `zip2zip` command line and the renderings behind it, checked against Zip2ZipTokenizer."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import zip2zip as z
from zip2zip.cli import main, run_stats
from zip2zip.render import TextStats, code_pieces, compression_stats, render_html, render_terminal

K = 64  # small, so that codebooks fill and freeze within the test texts
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FILES = {
    "a.txt": "the cat sat on the mat. " * 40 + "東京タワー 東京タワー 👩‍👩‍👧‍👦👩‍👩‍👧‍👦 é é\n",
    "b.py": "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 2\n\n\n" * 10,
}
MIXED = (
    "a\n\n\nb\n\n\nc\n\n\nd\n"
    + 'if a < b & c:\n\n\n    return "x"\n\n\n    return "x"\n' * 3
    + "東京タワー👍🏽👍🏽 東京タワー👍🏽\n"
)


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer):
    return z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=K)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "image.bin").write_bytes(b"\x00\xff")  # not matched by the default globs
    (folder / ".hidden.txt").write_text("skipped", encoding="utf-8")
    return folder


def cli(capsys, smollm2_tokenizer, *args):
    """Run `zip2zip ARGS` in-process with the session's SmolLM2 tokenizer: (status, out, err)."""
    status = main(list(args), base_tokenizer=smollm2_tokenizer)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def expected_stats(tok, text):
    return TextStats(
        len(text.encode("utf-8")),
        len(tok.base.encode(text, add_special_tokens=False)),
        len(tok.encode(text, add_special_tokens=False)),
    )


# ---------------------------------------------------------------------------- stats


def test_stats_json_matches_the_tokenizer(capsys, smollm2_tokenizer, tok, corpus):
    status, out, err = cli(capsys, smollm2_tokenizer, "stats", str(corpus), "-K", str(K), "--format", "json")
    assert status == 0, err
    rows = json.loads(out)
    assert [(r["kind"], r["path"]) for r in rows] == [
        ("file", "docs/a.txt"),
        ("file", "docs/b.py"),
        ("folder", "docs/"),
    ]
    total = TextStats(0, 0, 0)
    for row, (name, text) in zip(rows, FILES.items()):
        want = expected_stats(tok, text)
        assert row == {"kind": "file", "path": f"docs/{name}", **want.as_dict()}
        assert want.codes < want.base_tokens  # the texts repeat, so they do compress
        total = total + want
    assert rows[2] == {"kind": "folder", "path": "docs/", **total.as_dict()}
    assert rows[2]["reduction"] == pytest.approx(1 - total.codes / total.base_tokens)
    assert rows[2]["bytes_per_code"] == pytest.approx(total.bytes / total.codes)


def test_stats_csv_and_table(capsys, smollm2_tokenizer, corpus):
    status, out, _ = cli(capsys, smollm2_tokenizer, "stats", str(corpus), "-K", str(K), "--format", "json")
    as_json = json.loads(out)
    status, out, _ = cli(capsys, smollm2_tokenizer, "stats", str(corpus), "-K", str(K), "--format", "csv")
    assert status == 0
    as_csv = list(csv.DictReader(io.StringIO(out)))
    assert [{k: str(v) for k, v in row.items()} for row in as_json] == as_csv
    status, out, _ = cli(capsys, smollm2_tokenizer, "stats", str(corpus), "-K", str(K))
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"K={K}, S=4, one codebook per file"
    assert lines[2].startswith("| path") and "bytes/code" in lines[2]
    assert re.fullmatch(r"\|-+\|(-+:\|)+", lines[3])
    assert len(lines) == 4 + 3 and lines[-1].startswith("| **docs/**")
    assert f"{as_json[0]['codes']:,}" in lines[4] and f"{as_json[0]['reduction']:.1%}" in lines[4]


def test_stats_files_folders_and_globs(smollm2_tokenizer, tok, corpus, tmp_path):
    other = tmp_path / "other"
    (other / "deep").mkdir(parents=True)
    (other / "deep" / "c.md").write_text("# title\n\nsome text, some text\n", encoding="utf-8")
    out = io.StringIO()
    rows = run_stats(tok, [corpus / "a.txt", other, corpus], fmt="json", out=out)
    # a.txt given twice (as a file and in its folder) is measured once.
    assert [(r.kind, r.path) for r in rows] == [
        ("file", (corpus / "a.txt").as_posix()),
        ("file", "other/deep/c.md"),
        ("file", "docs/b.py"),
        ("total", "TOTAL"),
    ]
    assert rows[-1].stats.codes == sum(r.stats.codes for r in rows[:-1])
    assert json.loads(out.getvalue())[1]["codes"] == len(
        tok.encode("# title\n\nsome text, some text\n", add_special_tokens=False)
    )
    only_py = run_stats(tok, [corpus], globs=["*.py"], fmt="json", out=io.StringIO())
    assert [r.path for r in only_py] == ["docs/b.py"]


def test_windows_compress_from_empty_codebooks(capsys, smollm2_tokenizer, tok, corpus):
    text = FILES["a.txt"]
    ids = np.asarray(tok.base.encode(text, add_special_tokens=False), dtype=np.int32)
    for window in (1, 7, 50, len(ids), len(ids) + 10):
        want = sum(len(z.encode_ids(tok.config, ids[i : i + window])) for i in range(0, len(ids), window))
        (stats,) = compression_stats(tok, [text], window=window)
        assert (stats.base_tokens, stats.codes) == (len(ids), want)
    (whole,) = compression_stats(tok, [text])
    assert compression_stats(tok, [text], window=1)[0].codes == len(ids)  # one id per window: nothing merges
    assert compression_stats(tok, [text], window=len(ids))[0] == whole
    assert compression_stats(tok, [text], window=7)[0].codes > whole.codes  # short windows compress less
    status, out, _ = cli(
        capsys, smollm2_tokenizer, "stats", str(corpus / "a.txt"), "-K", str(K), "--window", "7", "--format", "json"
    )
    assert status == 0 and json.loads(out)[0]["codes"] == compression_stats(tok, [text], window=7)[0].codes
    with pytest.raises(ValueError, match="window"):
        compression_stats(tok, [text], window=0)


def test_empty_text_stats(tok):
    (stats,) = compression_stats(tok, [""])
    assert stats == TextStats(0, 0, 0)
    assert (stats.reduction, stats.bytes_per_token, stats.bytes_per_code) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------- pieces and renderings


@pytest.mark.parametrize("text", [MIXED, FILES["a.txt"], "", "👍", "é" * 30])
def test_pieces_join_to_the_decoded_text(tok, text):
    codes = tok.encode(text)
    pieces = code_pieces(tok, codes)
    assert "".join(piece for piece, _ in pieces) == tok.decode(codes)
    assert [hyper for _, hyper in pieces] == [c >= tok.vocab_size for c in codes]
    # A suffix decoded from the state after its prefix.
    cut = len(codes) // 2
    state = tok.state_after(codes[:cut])
    suffix = code_pieces(tok, codes[cut:], state)
    assert "".join(piece for piece, _ in suffix) == tok.decode(codes[cut:], state=state)


def test_pieces_follow_a_post_processed_decode(tok, monkeypatch):
    # A base tokenizer whose decode post-processes (like clean_up_tokenization_spaces) makes the
    # streamed pieces disagree with decode: the pieces are then cut from the decode itself.
    original = tok.decode
    monkeypatch.setattr(tok, "decode", lambda codes, state=None: original(codes, state=state).replace(" the", " THE!"))
    codes = tok.encode(FILES["a.txt"])
    pieces = code_pieces(tok, codes)
    assert "".join(piece for piece, _ in pieces) == tok.decode(codes) != original(codes)


def test_terminal_rendering(tok):
    codes = tok.encode(MIXED, add_special_tokens=False)
    hyper = sum(c >= tok.vocab_size for c in codes)
    coloured = render_terminal(tok, codes)
    assert ANSI.search(coloured) and ANSI.sub("", coloured).replace("↵", "").replace("·", " ") == MIXED
    plain = render_terminal(tok, codes, colour=False)
    assert not ANSI.search(plain) and plain.count("⟦") == plain.count("⟧") == hyper > 0
    # Whitespace-only hypertokens are visible.
    assert any(piece.isspace() and is_hyper for piece, is_hyper in code_pieces(tok, codes))
    assert "⟦↵\n" in plain


def test_show_command(capsys, smollm2_tokenizer, tok, tmp_path, monkeypatch):
    codes = tok.encode(MIXED, add_special_tokens=False)
    status, out, err = cli(capsys, smollm2_tokenizer, "show", "--text", MIXED, "-K", str(K), "--colour", "always")
    assert status == 0
    assert ANSI.sub("", out).replace("↵", "").replace("·", " ") == MIXED
    assert f"{len(codes):,} codes" in err
    status, out, _ = cli(capsys, smollm2_tokenizer, "show", "--text", MIXED, "-K", str(K))  # auto: not a TTY
    assert status == 0 and out == render_terminal(tok, codes, colour=False)
    path = tmp_path / "in.txt"
    path.write_text(MIXED, encoding="utf-8")
    first = render_terminal(tok, tok.encode(MIXED[:20], add_special_tokens=False), colour=False)
    assert cli(capsys, smollm2_tokenizer, "show", str(path), "-K", str(K), "--max-chars", "20")[1] == first + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(MIXED))
    assert cli(capsys, smollm2_tokenizer, "show", "-", "-K", str(K), "--colour", "never")[1] == out


def test_html(capsys, smollm2_tokenizer, tok, tmp_path):
    codes = tok.encode(MIXED, add_special_tokens=False)
    page = render_html(tok, codes, title="a <title>")
    hyper = [c for c in codes if c >= tok.vocab_size]
    assert page.count('<span class="h ') == len(hyper) > 0
    assert "<title>a &lt;title&gt;</title>" in page
    assert "if a &lt; b &amp; c:" in page and "<span" not in MIXED
    assert f'title="hypertoken {hyper[0]} = ' in page
    assert f"{len(tok.expand(codes)):,} base tokens &rarr; {len(codes):,} codes ({len(hyper):,} hypertokens)" in page
    body = re.search(r'<div class="text">(.*)</div>', page, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == MIXED  # the marks are CSS, not text
    out = tmp_path / "out.html"
    status, stdout, err = cli(capsys, smollm2_tokenizer, "show", "--text", MIXED, "-K", str(K), "--html", str(out))
    assert status == 0 and stdout == "" and str(out) in err
    assert out.read_text(encoding="utf-8") == render_html(tok, codes, title="zip2zip: text")


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, message",
    [
        (["stats", "/no/such/folder"], "no such file or folder"),
        (["stats", "{corpus}", "--glob", "*.rs"], "no files matching *.rs"),
        (["stats", "{corpus}", "--window", "0"], "--window must be at least 1"),
        (["stats", "{corpus}", "-S", "0"], "max_subtokens"),
        (["stats", "{corpus}", "-K", "-1"], "invalid codebook size"),
        (["stats", "{corpus}", "--tokenizer", "./no/such/tokenizer.json"], "no such file or folder"),
        (["stats", "{corpus}", "--tokenizer", "{corpus}/a.txt"], "cannot load tokenizer"),
        (["show", "{corpus}/missing.txt"], "missing.txt"),
        (["show", "{corpus}/image.bin"], "not UTF-8"),
        (["show", "{corpus}/a.txt", "--text", "x"], "not both"),
        (["show", "--text", "x", "--max-chars", "0"], "--max-chars"),
        (["show", "--text", "x", "--html", "/no/such/dir/out.html"], "could not write /no/such/dir/out.html"),
        (["stats", "/dev/null"], "not a regular file"),
        (["show", "/dev/zero"], "not a regular file"),
        (["show", "--text", "a\udc80b"], "lone surrogate"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, smollm2_tokenizer, corpus, args, message):
    status, out, err = cli(capsys, smollm2_tokenizer, *[a.replace("{corpus}", str(corpus)) for a in args])
    assert status == 2
    assert err.startswith("zip2zip: error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err and out == ""


def test_argparse_errors_and_help(capsys):
    assert main(["stats", "x", "--format", "xml"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "stats" in capsys.readouterr().out


def test_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "zip2zip", "show", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "--html" in result.stdout


# ---------------------------------------------------------------------------- what is not a file


def test_stats_skips_what_is_not_a_regular_file(capsys, smollm2_tokenizer, tok, corpus):
    """A FIFO (reading it would block forever) and a link to /dev/zero (endless) in a folder are
    skipped with a warning; the regular files are measured as before."""
    import os

    os.mkfifo(corpus / "pipe.txt")
    os.symlink("/dev/zero", corpus / "zero.txt")
    status, out, err = cli(capsys, smollm2_tokenizer, "stats", str(corpus), "-K", str(K), "--format", "json")
    assert status == 0
    assert "skipping docs/pipe.txt: not a regular file" in err and "skipping docs/zero.txt: not a regular file" in err
    assert [(r["kind"], r["path"]) for r in json.loads(out)] == [
        ("file", "docs/a.txt"),
        ("file", "docs/b.py"),
        ("folder", "docs/"),
    ]


def test_show_reads_only_max_chars(capsys, smollm2_tokenizer, tok, monkeypatch):
    """--max-chars bounds what is read: the first 10 characters of /dev/zero, and of stdin."""
    status, out, _ = cli(
        capsys, smollm2_tokenizer, "show", "/dev/zero", "--max-chars", "10", "-K", str(K), "--colour", "never"
    )
    assert (
        status == 0
        and out == render_terminal(tok, tok.encode("\0" * 10, add_special_tokens=False), colour=False) + "\n"
    )

    class EndlessStdin:
        buffer = open("/dev/zero", "rb")  # noqa: SIM115 (closed below)

    monkeypatch.setattr(sys, "stdin", EndlessStdin())
    try:
        assert (
            cli(capsys, smollm2_tokenizer, "show", "-", "--max-chars", "10", "-K", str(K), "--colour", "never")[1]
            == out
        )
        assert not EndlessStdin.buffer.closed  # stdin stays open
    finally:
        EndlessStdin.buffer.close()


def test_stdin_that_is_not_utf8_is_a_user_error(capsys, smollm2_tokenizer, monkeypatch):
    class BadStdin:
        buffer = io.BytesIO(b"ab\xff\xfe")

    monkeypatch.setattr(sys, "stdin", BadStdin())
    status, out, err = cli(capsys, smollm2_tokenizer, "show", "-")
    assert status == 2 and err == "zip2zip: error: stdin: not UTF-8 text\n" and out == ""


def test_bench_peers_usage_errors(capsys, tmp_path):
    assert main(["bench", "generate", "--shapes", "1b", "--peers"]) == 2
    assert "--peers needs --model DIR" in capsys.readouterr().err
    assert main(["bench", "generate", "--shapes", "1b", "--same-text"]) == 2
    assert "--same-text needs --model DIR" in capsys.readouterr().err
    assert main(["bench", "generate", "--model", str(tmp_path), "--peers", "--same-text"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["bench", "generate", "--model", str(tmp_path), "--peers", "--draft-phrase", "0"]) == 2
    assert "--draft-phrase" in capsys.readouterr().err
    assert main(["bench", "generate", "--model", str(tmp_path), "--peers", "--draft-codes", "0"]) == 2
    assert "--draft-codes, --lookup-tokens and --draft-phrase must be at least 1" in capsys.readouterr().err
