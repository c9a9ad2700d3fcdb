"""zip2zip.corpus: where the evaluation corpus is found, and the error when it is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from zip2zip import corpus
from zip2zip.corpus import BUILD_COMMAND, CorpusNotFoundError, corpora_root, corpus_files


def test_the_corpus_the_tests_read_has_every_domain():
    domains = {f.domain for f in corpus_files()}
    assert domains == {"chat", "code", "math", "multilingual", "prose"}


def test_a_missing_corpus_names_the_command_that_builds_it(tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.CORPORA_ENV, raising=False)
    monkeypatch.setattr(corpus, "_checkouts", lambda: [tmp_path / "checkout"])
    with pytest.raises(CorpusNotFoundError, match="build_eval_corpus.py") as error:
        corpora_root()
    assert BUILD_COMMAND in str(error.value)
    assert isinstance(error.value, FileNotFoundError)


def test_the_environment_variable_wins_and_must_name_a_folder(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.txt").write_text("x = 1\n", encoding="utf-8")
    monkeypatch.setenv(corpus.CORPORA_ENV, str(tmp_path))
    assert [(f.domain, f.name, f.read()) for f in corpus_files()] == [("code", "a.txt", "x = 1\n")]
    monkeypatch.setenv(corpus.CORPORA_ENV, str(tmp_path / "missing"))
    with pytest.raises(CorpusNotFoundError, match="not a folder"):
        corpora_root()


def test_an_empty_corpus_folder_is_an_error(tmp_path):
    with pytest.raises(CorpusNotFoundError, match=r"no \*/\*\.txt files"):
        corpus_files(tmp_path)


def test_the_checkout_corpus_comes_before_a_shared_one(tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.CORPORA_ENV, raising=False)
    checkout = tmp_path / "checkout"
    (tmp_path / "shared" / "corpora").mkdir(parents=True)
    monkeypatch.setattr(corpus, "_checkouts", lambda: [checkout])
    assert corpora_root() == tmp_path / "shared" / "corpora"
    (checkout / ".corpora").mkdir(parents=True)
    assert corpora_root() == checkout / ".corpora"
    assert isinstance(corpora_root(), Path)
