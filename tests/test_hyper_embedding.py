"""The hypertoken plumbing around a tiny random Llama: equivalence with the base model when no
hypertoken exists, masking of entries not yet installed, positions, loss, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zip2zip as z
from tiny_models import V, tiny
from zip2zip.nn import HyperEmbedding

S = 4


@pytest.fixture(scope="module")
def base():
    return tiny("llama", max_position_embeddings=256, tie_word_embeddings=False)


def batch_of(config: z.CodebookConfig, sequences: list[list[int]], left_pad: bool = True) -> dict[str, torch.Tensor]:
    encodings = [z.encode_ids(config, ids) for ids in sequences]
    length = max(len(e) for e in encodings)
    entries = max(e.num_entries for e in encodings)
    out = {
        "input_ids": torch.zeros(len(encodings), length, dtype=torch.long),
        "attention_mask": torch.zeros(len(encodings), length, dtype=torch.long),
        "installed": torch.zeros(len(encodings), length, dtype=torch.long),
        "codebook": torch.zeros(len(encodings), entries, S, dtype=torch.long),
        "codebook_lengths": torch.zeros(len(encodings), entries, dtype=torch.long),
    }
    for row, e in enumerate(encodings):
        span = slice(length - len(e), length) if left_pad else slice(0, len(e))
        out["input_ids"][row, span] = torch.from_numpy(e.codes.astype(np.int64))
        out["attention_mask"][row, span] = 1
        out["installed"][row, span] = torch.from_numpy(e.installed.astype(np.int64))
        out["codebook"][row, : e.num_entries] = torch.from_numpy(e.codebook.astype(np.int64))
        out["codebook_lengths"][row, : e.num_entries] = torch.from_numpy(e.codebook_lengths.astype(np.int64))
    return out


def forward(base, hyper: HyperEmbedding, batch: dict[str, torch.Tensor], mode: str = "base") -> torch.Tensor:
    embed = base.get_input_embeddings()
    head = base.get_output_embeddings().weight
    in_rows = hyper.encode_rows(embed, batch["codebook"], batch["codebook_lengths"], hyper.input_encoder)
    out_rows = hyper.encode_rows(
        lambda ids: head[ids], batch["codebook"], batch["codebook_lengths"], hyper.output_encoder
    )
    inputs = hyper.input_embeddings(batch["input_ids"], embed, in_rows)
    positions = hyper.position_ids(batch["input_ids"], batch["codebook_lengths"], batch["attention_mask"], mode)
    hidden = base.model(
        inputs_embeds=inputs, attention_mask=batch["attention_mask"], position_ids=positions
    ).last_hidden_state
    return hyper.logits(hidden, head, out_rows, batch["installed"])


def repetitive(rng: np.random.Generator, length: int) -> list[int]:
    motif = rng.integers(1, V, size=5).tolist()
    return [t if rng.random() > 0.2 else int(rng.integers(1, V)) for t in (motif * length)[:length]]


@pytest.mark.parametrize("mode", ["base", "compressed"])
def test_without_hypertokens_the_logits_are_the_base_models(base, mode):
    config = z.CodebookConfig(V, 0, S)
    hyper = HyperEmbedding(V, 0, S, 32)
    rng = np.random.default_rng(1)
    batch = batch_of(config, [repetitive(rng, 30), repetitive(rng, 17)], left_pad=False)
    with torch.no_grad():
        ours = forward(base, hyper, batch, mode)
        expected = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert ours.shape == expected.shape
    mask = batch["attention_mask"].bool()
    assert torch.equal(ours[mask], expected[mask])


def test_untrained_hypertokens_start_as_their_first_token(base):
    hyper = HyperEmbedding(V, 16, S, 32)
    module = base.get_input_embeddings()
    embed = module.weight
    codebook = torch.tensor([[[5, 6, 0, 0], [7, 8, 9, 0]]])
    lengths = torch.tensor([[2, 3]])
    rows = hyper.encode_rows(module, codebook, lengths, hyper.input_encoder)
    assert torch.equal(rows[0, 0], embed[5]) and torch.equal(rows[0, 1], embed[7])
    inputs = hyper.input_embeddings(torch.tensor([[3, V + 1, V]]), module, rows)
    assert torch.equal(inputs[0], torch.stack([embed[3], embed[7], embed[5]]))


def test_entries_not_yet_installed_are_minus_infinity(base):
    config = z.CodebookConfig(V, 12, S)
    hyper = HyperEmbedding(V, 12, S, 32)
    rng = np.random.default_rng(2)
    batch = batch_of(config, [repetitive(rng, 60)])
    with torch.no_grad():
        logits = forward(base, hyper, batch)
    assert logits.shape[-1] == V + 12
    installed = batch["installed"][0]
    entries = batch["codebook_lengths"].shape[1]
    for t in range(logits.shape[1]):
        hyper_logits = logits[0, t, V:]
        assert torch.isfinite(hyper_logits[: installed[t]]).all()
        assert torch.isinf(hyper_logits[installed[t] :]).all() and (hyper_logits[installed[t] :] < 0).all()
    assert entries > 0 and installed[-1] > 0


def test_base_positions_are_base_token_indices():
    config = z.CodebookConfig(V, 32, S)
    hyper = HyperEmbedding(V, 32, S, 32)
    ids = [1, 2, 1, 2, 1, 2, 3, 1, 2, 3, 1, 2, 3]
    batch = batch_of(config, [ids, [4, 5]])  # the second row is left-padded
    positions = hyper.position_ids(batch["input_ids"], batch["codebook_lengths"], batch["attention_mask"], "base")
    encoding = z.encode_ids(config, ids)
    ends = (
        np.cumsum(
            [len(z.CodecState(config).phrase(c)) if c < V else encoding.codebook_lengths[c - V] for c in encoding.codes]
        )
        - 1
    )
    assert positions[0].tolist() == ends.tolist() and ends[-1] == len(ids) - 1
    mask = batch["attention_mask"][1].bool()
    assert positions[1][mask].tolist() == [0, 1] and not positions[1][~mask].any()
    compressed = hyper.position_ids(
        batch["input_ids"], batch["codebook_lengths"], batch["attention_mask"], "compressed"
    )
    assert compressed[0].tolist() == list(range(len(encoding)))


def test_loss_ignores_kwkwk_targets_and_trains_the_encoders(base):
    config = z.CodebookConfig(V, 16, S)
    hyper = HyperEmbedding(V, 16, S, 32)
    batch = batch_of(config, [[7, 7, 7, 7, 7, 7, 3, 4, 3, 4, 3, 4]])
    codes = batch["input_ids"][0].tolist()
    assert codes[:2] == [7, V]  # the second code is the KwKwK entry [7, 7]
    logits = forward(base, hyper, batch)
    loss = hyper.loss(logits, batch["input_ids"], batch["installed"])
    assert torch.isfinite(loss)
    labels = batch["input_ids"].clone()
    labels[0, 1] = -100
    assert torch.equal(loss, hyper.loss(logits, labels, batch["installed"]))
    loss.backward()
    assert hyper.output_encoder.project_out.weight.grad.abs().sum() > 0
    assert hyper.input_encoder.project_out.weight.grad.abs().sum() > 0


def test_a_batch_gives_its_rows_results(base):
    config = z.CodebookConfig(V, 24, S)
    hyper = HyperEmbedding(V, 24, S, 32)
    torch.nn.init.normal_(hyper.input_encoder.project_out.weight, std=0.1)
    torch.nn.init.normal_(hyper.output_encoder.project_out.weight, std=0.1)
    rng = np.random.default_rng(3)
    sequences = [repetitive(rng, 50), repetitive(rng, 23), repetitive(rng, 35)]
    batch = batch_of(config, sequences)
    with torch.no_grad():
        together = forward(base, hyper, batch)
        for row, ids in enumerate(sequences):
            alone = forward(base, hyper, batch_of(config, [ids]))
            mask = batch["attention_mask"][row].bool()
            entries = alone.shape[-1]
            torch.testing.assert_close(together[row][mask][:, :entries], alone[0], rtol=1e-4, atol=1e-4)
