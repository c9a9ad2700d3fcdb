"""scripts/build_heldout_corpus.py: its sources are none of the training or evaluation corpus's,
and its file gathering and overlap count do what they say."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import build_eval_corpus  # noqa: E402
import build_heldout_corpus as heldout  # noqa: E402
import build_training_corpus  # noqa: E402


def test_its_sources_are_not_those_of_training_or_evaluation():
    trained = set(build_training_corpus.DEBIAN_PACKAGES)
    evaluated = set(build_eval_corpus.DEBIAN_PACKAGES)
    assert not set(heldout.DEBIAN_PACKAGES) & (trained | evaluated)
    assert not set(heldout.CHAT_LANGUAGES) & set(build_eval_corpus.CHAT_LANGUAGES)
    # No natural language of the training corpus's manual pages (its files are named LANG.txt).
    trained_languages = {output.name.split(".")[0].split("-")[0] for output in build_training_corpus.MULTILINGUAL}
    assert trained_languages and not set(heldout.MAN_LANGUAGES) & trained_languages
    # No programming language either: the held-out code files and the other-language code
    # section of the training corpus are named NAME.SUFFIX.txt.
    held_code = {name.split(".")[-2] for folder, name, *_ in heldout.FILES if folder == "code"}
    trained_code = {output.name.split(".")[-2] for output in build_training_corpus.OTHER_CODE}
    assert held_code == {"pm", "rb", "tcl", "js", "h"} and len(trained_code) == 7
    assert not held_code & (trained_code | {"py"})


def test_gather_joins_sorted_files_within_the_limit(tmp_path, monkeypatch):
    root = tmp_path / "pkg"
    (root / "lib" / "b").mkdir(parents=True)
    (root / "lib" / "z.rb").write_text("zed\n")
    (root / "lib" / "b" / "a.rb").write_text("alpha\nbeta\n")
    (root / "lib" / "link.rb").symlink_to(root / "lib" / "z.rb")
    (root / "lib" / "notes.txt").write_text("not matched\n")
    assert heldout.gather(root, ["lib/**/*.rb"], "text") == "alpha\nbeta\n\nzed\n"
    (root / "man").mkdir()
    (root / "man" / "x.1.gz").write_bytes(gzip.compress(b'.TH X 1\n.\\" a comment\n.SH NAME\nx \\- does y\n'))
    assert heldout.gather(root, ["man/*.gz"], "man") == "NAME\nx - does y\n"
    monkeypatch.setattr(heldout, "LIMIT", 8)
    assert heldout.gather(root, ["lib/**/*.rb"], "text") == "alpha\n"  # cut at a line end
    with pytest.raises(build_eval_corpus.BuildError, match="nothing under pkg matches"):
        heldout.gather(root, ["*.pm"], "text")


def test_the_overlap_counts_long_lines_shared_with_training(tmp_path):
    shared = "a line long enough to count as one of the long lines here"
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "f.txt").write_text(
        f"{shared}\nshort line\n{'another long line that training never saw, not once'}\n"
    )
    (tmp_path / "train" / "code").mkdir(parents=True)
    (tmp_path / "train" / "code" / "t.txt").write_text(f"  {shared}  \nshort line\n")
    entries: list[dict[str, object]] = [{"file": "held/f.txt"}]
    heldout.count_overlap(tmp_path, entries, heldout.training_lines(tmp_path / "train"))
    assert entries == [{"file": "held/f.txt", "long_lines": 2, "long_lines_in_training": 1}]
