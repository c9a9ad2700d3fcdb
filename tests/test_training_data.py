"""Training data: documents from text and chat files, windows of canonical codes, the length-grouped
sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zip2zip as z
from zip2zip.codec import read_codes
from zip2zip.errors import TrainingError
from zip2zip.generation.fields import codebook_fields
from zip2zip.training.data import (
    CodeWindows,
    Document,
    code_lengths,
    collate_windows,
    read_back_mask,
    read_documents,
    tokenize_document_stream,
    tokenize_documents,
)


def test_windows_cover_every_token_with_canonical_codes(tok):
    rng = np.random.default_rng(0)
    motifs = [rng.integers(100, 5000, size=6) for _ in range(4)]
    ids = np.concatenate([motifs[i % 4] for i in rng.integers(0, 4, size=400)]).astype(np.int32)
    mask = np.ones(len(ids), dtype=np.uint8)
    mask[50:90] = 0
    windows = CodeWindows(tok, ids, mask, window_codes=40)
    covered = []
    for index in range(len(windows)):
        item = windows[index]
        codes = item["input_ids"].numpy()
        assert len(codes) == 40 or index == len(windows) - 1  # every window but the last is full
        expanded = tok.expand(codes)
        assert int(item["base_tokens"]) == len(expanded)
        covered.extend(expanded.tolist())
        encoding = z.encode_ids(tok.config, expanded)  # canonical encoding of the window itself
        assert np.array_equal(encoding.codes, codes)
        assert np.array_equal(encoding.installed, item["installed"].numpy())
        # A code is scored iff all its base tokens are.
        start = int(windows.starts[index])
        ends = np.cumsum(code_lengths(encoding, tok.vocab_size))
        for position, end in enumerate(ends):
            begin = end - code_lengths(encoding, tok.vocab_size)[position]
            scored = bool(mask[start + begin : start + end].all())
            assert (int(item["labels"][position]) != -100) == scored
    assert covered == ids.tolist()  # no base token dropped or repeated at a boundary
    batch = collate_windows([windows[0], windows[len(windows) - 1]])
    assert (
        batch["input_ids"].shape == (2, 40)
        and batch["labels"][1, len(windows[len(windows) - 1]["input_ids"]) :].eq(-100).all()
    )
    with pytest.raises(ValueError, match="window_codes"):
        CodeWindows(tok, ids, mask, window_codes=1)


def test_document_windows_start_every_document_with_an_empty_codebook(tok):
    """With document starts, no window spans two documents, a document's first window starts
    at its first token (so its codebook is empty there, as a prompt's is), and the windows
    still cover every token once with canonical codes."""
    from zip2zip.training.data import tokenize_document_stream

    rng = np.random.default_rng(1)
    motif = rng.integers(100, 5000, size=5)
    documents = [Document(text=tok.base.decode(np.tile(motif, n).tolist())) for n in (3, 40, 1, 25)]
    ids, mask, starts = tokenize_document_stream(tok, documents)
    assert (
        starts[0] == 0
        and len(starts) == 4
        and np.array_equal(
            np.diff(np.append(starts, len(ids))),
            [len(tok.base.encode(d.text, add_special_tokens=False)) + 1 for d in documents],
        )
    )
    windows = CodeWindows(tok, ids, mask, window_codes=24, document_starts=starts)
    edges = windows.starts.tolist()
    assert set(starts.tolist()) <= set(edges)  # each document starts a window
    ends = starts.tolist()[1:] + [len(ids)]
    covered = []
    for index in range(len(windows)):
        begin, end = edges[index], edges[index + 1]
        assert any(s <= begin and end <= e for s, e in zip(starts.tolist(), ends))  # inside one document
        codes = windows[index]["input_ids"].numpy()
        assert len(codes) <= 24 and (len(codes) == 24 or end in ends)  # only a document's last window is short
        assert np.array_equal(z.encode_ids(tok.config, ids[begin:end]).codes, codes)
        covered.extend(tok.expand(codes).tolist())
    assert covered == ids.tolist()
    run_on = CodeWindows(tok, ids, mask, window_codes=24)
    assert len(run_on) < len(windows) and not set(starts.tolist()[1:]) <= set(run_on.starts.tolist())
    with pytest.raises(ValueError, match="document_starts"):
        CodeWindows(tok, ids, mask, window_codes=24, document_starts=np.array([0, 50, 20]))


def test_documents_from_text_and_chat_jsonl(tok, tmp_path):
    (tmp_path / "a.txt").write_text("plain text document")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "a line of text"})
        + "\n"
        + json.dumps(
            {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]}
        )
        + "\n"
    )
    documents = read_documents([tmp_path])
    assert [d.text for d in documents] == ["plain text document", "a line of text", None]
    ids, mask = tokenize_documents(tok, documents)
    eos = tok.base.eos_token_id
    assert int((ids == eos).sum()) >= 3 and ids[-1] == eos and mask[-1] == 1  # EOS after each document, scored
    plain = tok.base.encode("plain text document", add_special_tokens=False)
    assert ids[len(plain)] == eos and mask[: len(plain) + 1].all()
    text = tok.base.decode(ids[mask.astype(bool)].tolist())
    assert "Hi there!" in text and "Say hi." not in text  # only the assistant turn is scored
    assert tok.base.decode(ids.tolist()).count("plain text document") == 1
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_documents([tmp_path / "bad.jsonl"])
    with pytest.raises(FileNotFoundError):
        read_documents([tmp_path / "missing.txt"])
    assert tokenize_documents(tok, [Document(text="x")])[0].tolist() == tok.base.encode(
        "x", add_special_tokens=False
    ) + [eos]


def test_grouped_batches_cover_each_epoch_once_with_little_padding():
    """--group-by-length's batches: each epoch holds every window once, the order is fixed by
    the seed, and windows of mixed lengths (chats and full windows) pad far less than in the
    shuffled order."""
    from zip2zip.training.samplers import EpochOrder, GroupedBatches

    rng = np.random.default_rng(3)
    lengths = np.where(rng.random(1000) < 0.3, 1024, rng.integers(20, 600, 1000))
    sampler = GroupedBatches(lengths, batch_size=8, epochs=2, seed=5, pool=16)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 * 125 and batches == list(GroupedBatches(lengths, 8, 2, 5, pool=16))
    assert sorted(sum(batches[:125], [])) == list(range(1000)) == sorted(sum(batches[125:], []))
    assert batches[:125] != batches[125:] and all(len(b) == 8 for b in batches)

    def padding(groups):
        return sum(len(g) * lengths[g].max() - lengths[g].sum() for g in groups)

    flat = list(EpochOrder(1000, 2, 5))
    shuffled = [flat[i : i + 8] for i in range(0, len(flat), 8)]
    assert padding(batches) < 0.2 * padding(shuffled)
    short = list(GroupedBatches(lengths[:997], batch_size=8, epochs=1, seed=0))
    assert [len(b) for b in short[:-1]] == [8] * 124 and len(short[-1]) == 5  # the epoch's last batch
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatches(lengths, batch_size=0, epochs=1, seed=0)


def _chat_documents():
    """A text document and chats whose answers repeat themselves (so that they compress to
    hypertokens), one of them two turns long."""
    answer = "def add(a, b):\n    return a + b\n" * 4
    return [
        Document(text="some plain text " * 8),
        Document(messages=[{"role": "user", "content": "Write add."}, {"role": "assistant", "content": answer}]),
        Document(
            messages=[
                {"role": "user", "content": "Say it twice."},
                {"role": "assistant", "content": "hello world, hello world, hello world"},
                {"role": "user", "content": "Again."},
                {"role": "assistant", "content": "hello world, hello world"},
            ]
        ),
    ]


def test_the_read_back_mask_covers_the_chosen_chats_answers(tok):
    documents = _chat_documents()
    ids, mask, starts = tokenize_document_stream(tok, documents)
    every = read_back_mask(documents, mask, starts, 1.0)
    assert every[: starts[1]].sum() == 0  # never the text document
    assert np.array_equal(every[starts[1] :], mask[starts[1] :])  # the chats' answers (and EOS) only
    assert read_back_mask(documents, mask, starts, 0.0).sum() == 0
    # A share draws whole documents (each chat's answers all read back or none), the same ones
    # for the same seed, other ones for other seeds.
    ends = [*starts[1:].tolist(), len(ids)]
    draws = set()
    for seed in range(12):
        drawn = read_back_mask(documents, mask, starts, 0.5, seed)
        assert np.array_equal(drawn, read_back_mask(documents, mask, starts, 0.5, seed))
        chosen = []
        for start, end in zip(starts[1:].tolist(), ends[1:]):
            assert np.array_equal(drawn[start:end], mask[start:end]) or drawn[start:end].sum() == 0
            chosen.append(bool(drawn[start:end].sum()))
        draws.add(tuple(chosen))
    assert len(draws) > 1
    for share in (-0.1, 1.5):
        with pytest.raises(TrainingError, match="read-back share"):
            read_back_mask(documents, mask, starts, share)
    with pytest.raises(TrainingError, match="document starts"):
        read_back_mask(documents, mask, starts[:2], 1.0)
    with pytest.raises(TrainingError, match="read_back"):
        CodeWindows(tok, ids, mask, 32, read_back=every[:-1])


def test_read_back_windows_are_what_generation_reading_base_ids_sees(tok):
    """Codes wholly inside an answer become their base ids; each stays the target at its first
    base id; the targets, in order, are the plain windows'; the text is the same; the installed
    count before every target is what a decoder tracking that stream has (`read_codes`, as
    ``generate(read_output_as="base_ids")`` builds it); ``code_ends`` index each position's last
    base token."""
    documents = _chat_documents()
    ids, mask, starts = tokenize_document_stream(tok, documents)
    back = read_back_mask(documents, mask, starts, 1.0)
    plain = CodeWindows(tok, ids, mask, 24, document_starts=starts, teacher_ids=True)
    windows = CodeWindows(tok, ids, mask, 24, document_starts=starts, teacher_ids=True, read_back=back)
    assert np.array_equal(plain.starts, windows.starts)
    spread = 0
    for index in range(len(windows)):
        item, before = windows[index], plain[index]
        start, end = int(windows.starts[index]), int(windows.starts[index + 1])
        inputs, labels = item["input_ids"].numpy(), item["labels"].numpy()
        assert np.array_equal(labels[labels != -100], before["labels"].numpy()[before["labels"].numpy() != -100])
        # The same text, cut into other positions.
        assert (
            tok.expand(inputs).tolist() == tok.expand(before["input_ids"].numpy()).tolist() == ids[start:end].tolist()
        )
        tracked = read_codes(tok.config, inputs)
        lengths = code_lengths(tracked, tok.vocab_size)
        assert np.array_equal(item["code_ends"].numpy(), np.cumsum(lengths) - 1)
        targets = np.flatnonzero(labels != -100)
        before_target = targets[targets > 0] - 1
        assert np.array_equal(item["installed"].numpy()[before_target], tracked.installed[before_target])
        # Positions read back hold the window's own base ids, and no hypertoken is read there.
        inside = np.minimum.reduceat(back[start:end], np.cumsum(lengths) - lengths).astype(bool)
        assert (inputs[inside] < tok.vocab_size).all()
        spread += int((labels[inside] == -100).sum())
    assert spread > 0  # hypertokens of the answers were read as base ids
    batch = collate_windows([windows[i] for i in range(len(windows))])
    assert batch["code_ends"].shape == batch["input_ids"].shape


def test_the_read_back_loss_is_a_loop_over_what_generation_reads(saved):
    """The model's loss on a batch of read-back windows equals, target by target, the loss of
    running the model on the stream before each target as generation builds it (codebook and
    installed counts tracked from the stream, `codebook_fields`), averaged: the training inputs are
    what ``generate(read_output_as="base_ids")`` feeds."""
    _, tok, model = saved
    documents = _chat_documents()
    ids, mask, starts = tokenize_document_stream(tok, documents)
    back = read_back_mask(documents, mask, starts, 1.0)
    windows = CodeWindows(tok, ids, mask, 24, document_starts=starts, read_back=back)
    items = [windows[i] for i in range(len(windows))]
    batch = collate_windows(items)
    keys = ("input_ids", "attention_mask", "labels", "codebook", "codebook_lengths", "installed")
    with torch.no_grad():
        loss = model(**{key: batch[key] for key in keys}).loss
    config = model.codebook_config()
    losses = []
    for item in items:
        inputs, labels, installed = item["input_ids"], item["labels"], item["installed"]
        for t in range(1, len(inputs)):
            if labels[t] == -100 or labels[t] >= tok.vocab_size + installed[t - 1]:  # unscored, or KwKwK
                continue
            prefix = inputs[:t][None]
            with torch.no_grad():
                logits = model(input_ids=prefix, **codebook_fields(config, prefix, None)).logits[0, -1]
            losses.append(torch.nn.functional.cross_entropy(logits[None], labels[t : t + 1]))
    assert len(losses) > 20
    assert torch.allclose(loss, torch.stack(losses).mean(), atol=1e-5), (loss, torch.stack(losses).mean())
