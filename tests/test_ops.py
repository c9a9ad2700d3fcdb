"""zip2zip.ops: Triton kernels against the torch reference, forward and gradients.

On a machine without CUDA the kernels run on the CPU under ``TRITON_INTERPRET=1`` (conftest.py
sets it before Triton is first imported); with CUDA the same tests run them on the GPU.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from zip2zip.ops import default_chunk_size, hyper_cross_entropy, hyper_gather, reference
from zip2zip.ops import triton_kernels as kernels

CUDA = torch.cuda.is_available()
if not CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    raise RuntimeError(
        "without CUDA these tests need TRITON_INTERPRET=1 before Triton is imported (tests/conftest.py sets it)"
    )

DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPES = [torch.float32, torch.bfloat16]
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def ragged_codebook(entries: int, slots: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``entries`` phrases whose lengths cycle through 0..slots (0: padding entries), padding
    slots filled with random (possibly out-of-range) junk that must be ignored."""
    generator = torch.Generator().manual_seed(seed)
    phrases = torch.randint(0, vocab, (entries, slots), generator=generator)
    lengths = torch.arange(entries) % (slots + 1)
    junk = torch.arange(slots)[None, :] >= lengths[:, None]
    phrases[junk] = torch.randint(-5, 2 * vocab, (int(junk.sum()),), generator=generator)
    return phrases.to(DEVICE), lengths.to(DEVICE)


def naive_gather(
    weight: torch.Tensor, phrases: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain autograd over an embedding lookup: what the op must equal."""
    real = torch.arange(phrases.shape[1], device=phrases.device)[None, :] < lengths[:, None]
    rows = F.embedding(torch.where(real, phrases, 0), weight.float()) * real[..., None]
    return rows[:, 0], rows.sum(1) / lengths.clamp(min=1)[:, None]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("vocab", "hidden", "entries", "slots"),
    [
        (37, 1, 0, 4),
        (37, 33, 1, 1),
        (50, 130, 9, 4),
        (11, 67, 40, 7),
        (300, 1100, 12, 3),
    ],
)
def test_hyper_gather_kernel_equals_reference(dtype, vocab, hidden, entries, slots):
    torch.manual_seed(vocab + hidden + entries)
    weight = torch.randn(vocab, hidden, device=DEVICE).to(dtype)
    phrases, lengths = ragged_codebook(entries, slots, vocab, seed=hidden)
    assert set(lengths.tolist()) >= set(range(1, min(entries, slots + 1)))  # every length 1..S occurs
    for ours, expected in zip(
        kernels.gather_forward(weight, phrases, lengths), reference.gather_forward(weight, phrases, lengths)
    ):
        assert ours.dtype == dtype and ours.shape == (entries, hidden)
        torch.testing.assert_close(ours.float(), expected.float(), **TOLERANCE[dtype])
    grad_first = torch.randn(entries, hidden, device=DEVICE).to(dtype)
    grad_mean = torch.randn(entries, hidden, device=DEVICE).to(dtype)
    ours = kernels.gather_backward(grad_first, grad_mean, phrases, lengths, vocab)
    expected = reference.gather_backward(grad_first, grad_mean, phrases, lengths, vocab)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # Padding entries contribute nothing: rows only referenced from padding slots stay zero.
    used = torch.zeros(vocab, dtype=torch.bool, device=DEVICE)
    real = torch.arange(slots, device=DEVICE)[None, :] < lengths[:, None]
    used[phrases[real]] = True
    assert not ours[~used].any()


@pytest.mark.parametrize("config", [(1, 64, 1), (4, 32, 2), (16, 16, 4), (2, 128, 2)])
def test_hyper_gather_kernel_tiles_equal_reference(config):
    """Every tile shape the benchmark may pick (entries per program, columns, warps) gives the
    reference's rows and gradient, with entries and columns left over at the edges."""
    vocab, hidden, entries, slots = 60, 97, 23, 5
    weight = torch.randn(vocab, hidden, device=DEVICE)
    phrases, lengths = ragged_codebook(entries, slots, vocab, seed=config[0])
    lengths[3] = 0  # an empty entry inside a tile
    for ours, expected in zip(
        kernels.gather_forward(weight, phrases, lengths, config), reference.gather_forward(weight, phrases, lengths)
    ):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    grad_first, grad_mean = torch.randn(2, entries, hidden, device=DEVICE)
    torch.testing.assert_close(
        kernels.gather_backward(grad_first, grad_mean, phrases, lengths, vocab, config),
        reference.gather_backward(grad_first, grad_mean, phrases, lengths, vocab),
        rtol=1e-5,
        atol=1e-5,
    )


def test_gather_config_keeps_lanes_busy():
    """The default tile wastes at most an eighth of its columns on every width from 1 to 8192
    (above the smallest block, 16) and holds 1,024 values."""
    for hidden in range(1, 8193):
        rows, block, warps = kernels.gather_config(hidden)
        assert rows * block == 1024 and 16 <= block <= 128 and 1 <= warps <= 8
        used = hidden / (-(-hidden // block) * block)
        assert block == 16 or used >= 7 / 8, (hidden, block)
    # SmolLM2-135M: five blocks of 128 (the tile measured fastest), not one block of 1,024 lanes.
    assert kernels.gather_config(576) == (8, 128, 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hyper_gather_op_is_differentiable_and_dispatches(dtype):
    torch.manual_seed(3)
    weight = torch.randn(41, 24, device=DEVICE).to(dtype).requires_grad_()
    phrases, lengths = ragged_codebook(17, 5, 41, seed=4)
    first, mean = hyper_gather(weight, phrases, lengths)
    expected_first, expected_mean = naive_gather(weight, phrases, lengths)
    torch.testing.assert_close(first.float(), expected_first, **TOLERANCE[dtype])
    torch.testing.assert_close(mean.float(), expected_mean, **TOLERANCE[dtype])
    up_first, up_mean = torch.randn_like(expected_first), torch.randn_like(expected_mean)
    (grad,) = torch.autograd.grad((first.float() * up_first).sum() + (mean.float() * up_mean).sum(), weight)
    (expected,) = torch.autograd.grad((expected_first * up_first).sum() + (expected_mean * up_mean).sum(), weight)
    torch.testing.assert_close(grad.float(), expected.float(), **TOLERANCE[dtype])
    # Only one output used: the other's gradient is taken as zero.
    (grad_mean_only,) = torch.autograd.grad(hyper_gather(weight, phrases, lengths)[1].float().sum(), weight)
    (expected_mean_only,) = torch.autograd.grad(naive_gather(weight, phrases, lengths)[1].sum(), weight)
    torch.testing.assert_close(grad_mean_only.float(), expected_mean_only.float(), **TOLERANCE[dtype])


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")  # opcheck's own probing
def test_hyper_gather_registration_passes_opcheck():
    weight = torch.randn(23, 8, device=DEVICE, requires_grad=True)
    phrases, lengths = ragged_codebook(6, 3, 23, seed=5)
    phrases = phrases.clamp(0, 22)  # opcheck also runs the op under other modes: keep ids valid
    torch.library.opcheck(torch.ops.zip2zip.hyper_gather.default, (weight, phrases, lengths))


def test_hyper_gather_rejects_bad_input():
    weight = torch.randn(10, 4, device=DEVICE)
    phrases = torch.tensor([[1, 2], [3, 4]], device=DEVICE)
    with pytest.raises(ValueError, match="length 3, outside 0..2"):
        hyper_gather(weight, phrases, torch.tensor([1, 3], device=DEVICE))
    with pytest.raises(ValueError, match="id 12 of entry 1"):
        hyper_gather(weight, torch.tensor([[1, 2], [12, 4]], device=DEVICE), torch.tensor([2, 1], device=DEVICE))
    with pytest.raises(ValueError, match="phrases \\[N, S\\]"):
        hyper_gather(weight, phrases[0], torch.tensor([1], device=DEVICE))
    with pytest.raises(ValueError, match="integer"):
        hyper_gather(weight, phrases.float(), torch.tensor([1, 1], device=DEVICE))
    # Ids after an entry's length are never read, even out of range.
    first, mean = hyper_gather(
        weight, torch.tensor([[1, 99], [-7, 4]], device=DEVICE), torch.tensor([1, 0], device=DEVICE)
    )
    assert torch.equal(first[0], weight[1]) and torch.equal(mean[0], weight[1]) and not first[1].any()


# ---------------------------------------------------------------------------- cross-entropy


def random_rows_problem(count: int, vocab: int, entries: int, dtype: torch.dtype, seed: int):
    generator = torch.Generator().manual_seed(seed)
    base = (torch.randn(count, vocab, generator=generator) * 3).to(DEVICE, dtype)
    hyper = (torch.randn(count, entries, generator=generator) * 3).to(DEVICE, dtype)
    available = torch.randint(0, entries + 1, (count,), generator=generator)
    targets = torch.randint(0, vocab, (count,), generator=generator)
    use_hyper = (available > 0) & (torch.rand(count, generator=generator) < 0.5)
    pick = (torch.rand(count, generator=generator) * available).long()
    targets = torch.where(use_hyper, vocab + pick, targets)
    return base, hyper, targets.to(DEVICE), available.to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("softcap", [0.0, 5.0])
@pytest.mark.parametrize(("count", "vocab", "entries"), [(1, 1, 0), (3, 37, 1), (9, 300, 17), (5, 4100, 70)])
def test_cross_entropy_rows_kernel_equals_reference(dtype, softcap, count, vocab, entries):
    base, hyper, targets, available = random_rows_problem(count, vocab, entries, dtype, seed=vocab + entries)
    ours_base, ours_hyper = base.clone(), hyper.clone()
    ref_base, ref_hyper = base.clone(), hyper.clone()
    ours = kernels.ce_rows(ours_base, ours_hyper, targets, available, 0.25, softcap)
    expected = reference.ce_rows_reference(ref_base, ref_hyper, targets, available, 0.25, softcap)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_base.float(), ref_base.float(), **TOLERANCE[dtype])
    torch.testing.assert_close(ours_hyper.float(), ref_hyper.float(), **TOLERANCE[dtype])
    # Slots not available get no gradient at all.
    unavailable = torch.arange(entries, device=DEVICE)[None, :] >= available[:, None]
    assert not ours_hyper[unavailable].any()


def naive_loss(hidden, weight, rows, targets, available, softcap=0.0):
    """Full logits, then cross-entropy: the memory-hungry formulation the op replaces."""
    vocab, entries = weight.shape[0], rows.shape[1]
    logits = torch.cat([hidden @ weight.T, hidden @ rows.transpose(1, 2)], dim=-1).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    unavailable = torch.arange(vocab + entries, device=hidden.device)[None, None, :] >= (vocab + available)[..., None]
    logits = logits.masked_fill(unavailable, float("-inf"))
    targets = targets.masked_fill(targets >= vocab + available, -100)
    return F.cross_entropy(logits.reshape(-1, vocab + entries), targets.reshape(-1), ignore_index=-100)


def loss_problem(batch, length, vocab, entries, size, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, size, generator=generator).to(DEVICE, dtype).requires_grad_()
    weight = (torch.randn(vocab, size, generator=generator) / size**0.5).to(DEVICE, dtype).requires_grad_()
    rows = (torch.randn(batch, entries, size, generator=generator) / size**0.5).to(DEVICE, dtype).requires_grad_()
    targets = torch.randint(0, vocab + entries, (batch, length), generator=generator)
    available = torch.randint(0, entries + 1, (batch, length), generator=generator)
    targets[torch.rand(batch, length, generator=generator) < 0.2] = -100  # masked positions
    return hidden, weight, rows, targets.to(DEVICE), available.to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("batch", "length", "vocab", "entries", "size", "chunk"),
    [
        (1, 1, 5, 0, 3, None),
        (2, 13, 37, 1, 9, 1),
        (3, 17, 301, 23, 20, 4),
        (2, 40, 2500, 64, 16, 16),
    ],
)
def test_hyper_cross_entropy_equals_full_logits(dtype, batch, length, vocab, entries, size, chunk):
    inputs = loss_problem(batch, length, vocab, entries, size, dtype, seed=vocab)
    hidden, weight, rows, targets, available = inputs
    ours = hyper_cross_entropy(*inputs, chunk_size=chunk)
    ours_grads = torch.autograd.grad(ours, (hidden, weight, rows))
    expected = naive_loss(*inputs)
    expected_grads = torch.autograd.grad(expected, (hidden, weight, rows))
    torch.testing.assert_close(ours, expected, **TOLERANCE[dtype])
    for got, want in zip(ours_grads, expected_grads):
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want.float(), **TOLERANCE[dtype])


@pytest.mark.parametrize("softcap", [0.0, 7.0])
def test_kernel_and_reference_drive_the_same_chunked_loss(softcap):
    hidden, weight, rows, targets, available = loss_problem(2, 11, 3000, 40, 12, torch.float32, seed=8)
    args = (hidden.detach(), weight.detach(), rows.detach(), targets, available, softcap, 5, True, True, True)
    ours = reference.cross_entropy_forward(*args, row_kernel=kernels.ce_rows)
    expected = reference.cross_entropy_forward(*args)
    for got, want in zip(ours, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    naive = naive_loss(hidden, weight, rows, targets, available, softcap)
    torch.testing.assert_close(ours[0], naive, rtol=1e-5, atol=1e-6)


def test_hyper_cross_entropy_edge_cases():
    hidden, weight, rows, targets, available = loss_problem(2, 6, 30, 4, 8, torch.float32, seed=9)
    # Nothing counts: 0, and zero gradients (not NaN).
    ignored = torch.full_like(targets, -100)
    loss = hyper_cross_entropy(hidden, weight, rows, ignored, available)
    assert loss.item() == 0.0
    (grad,) = torch.autograd.grad(loss, hidden)
    assert not grad.any()
    # A hypertoken target that is not available yet (KwKwK) is ignored, as -100 would be.
    kwkwk = targets.clone()
    kwkwk[0, 0] = 30 + 3
    limited = available.clone()
    limited[0, 0] = 3
    reference_targets = kwkwk.clone()
    reference_targets[0, 0] = -100
    torch.testing.assert_close(
        hyper_cross_entropy(hidden, weight, rows, kwkwk, limited),
        hyper_cross_entropy(hidden, weight, rows, reference_targets, limited),
    )
    # A frozen LM head gets no gradient and costs none.
    loss = hyper_cross_entropy(hidden, weight.detach(), rows, targets, available)
    grads = torch.autograd.grad(loss, (hidden, rows))
    assert all(g.abs().sum() > 0 for g in grads)
    # Without autograd only the loss is computed, and it is the same.
    with torch.no_grad():
        torch.testing.assert_close(hyper_cross_entropy(hidden, weight, rows, targets, available), loss.detach())
    # Gradients are made in forward and scaled in place: a second backward raises.
    loss = hyper_cross_entropy(hidden, weight, rows, targets, available)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()
    assert default_chunk_size(49152, 2048) * (49152 + 2048) <= 1 << 27
    with pytest.raises(ValueError, match="widths disagree"):
        hyper_cross_entropy(hidden, weight[:, :5], rows, targets, available)
    with pytest.raises(ValueError, match="targets and available"):
        hyper_cross_entropy(hidden, weight, rows, targets[:, :2], available)
    with pytest.raises(ValueError, match="chunk_size"):
        hyper_cross_entropy(hidden, weight, rows, targets, available, chunk_size=0)


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")  # opcheck's own probing
def test_hyper_cross_entropy_registration_passes_opcheck():
    hidden, weight, rows, targets, available = loss_problem(2, 5, 19, 3, 4, torch.float32, seed=10)
    torch.library.opcheck(
        torch.ops.zip2zip.hyper_cross_entropy.default,
        (hidden, weight, rows, targets, available, 0.0, 3, True, True, True),
    )
