# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""Canonical inputs: generation in which the model always reads the canonical encoding of its text.

A zip2zip model is trained on canonical code streams: the encoder cuts the text greedily, so a
code whose phrase is ``P`` is never followed by a code starting with ``t`` when ``P + t`` is an
entry. Plain generation appends the code the model chose, and a model that writes ``P`` and then
``t`` (where ``P + t`` is known) leaves a stream no training window ever had, which the model then
reads for the rest of its answer. The canonical mask (``canonical_outputs``) forbids such codes,
but that forbids the text's own continuation: a model that wants ``max_element`` after writing
``max_`` as one code and ``element`` as another is made to write something else (``max__element``;
docs/generation.md, "The canonical mask").

Here nothing is forbidden. Each step the model's chosen code is read as text: its phrase is fed
to the row's encoder, which continues the canonical encoding of the whole text (its last phrase
stays open, as it does at the end of a prompt). When the encoder closes the open code unchanged,
the model reads the codes that follow, one step as usual; when it extends the open code instead
(``max_`` and ``e`` become ``max_e``), the open position is taken out of the KV cache (its
attention-mask column set to 0; positions are explicit, so nothing moves) and the model reads
the rewritten code and what follows in the same pass. So every position the model attends to is
the canonical encoding of the text, as in training, and the text is exactly what the model chose.

The codebook depends only on the text, never on how it was cut (`zip2zip._core.CodecState`), so
the chosen codes decode, after the prompt, to the same text: the returned sequences are those
``generate()`` would return, and the tokenizer decodes them as usual. A step costs one pass, as
plain decoding does; a rewriting step's pass reads two or more positions.

``Zip2ZipForCausalLM.generate(..., canonical_inputs=True)`` runs this loop, greedy or sampled
(``do_sample`` with ``temperature``, ``top_k``, ``top_p``); the prompt must be canonical codes, as
the tokenizer writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from zip2zip._core import CodecState
from zip2zip.errors import ModelInputError
from zip2zip.generation.sampling import SamplingConfig, sample_next
from zip2zip.generation.speculative import (
    _Draft,
    _keep_marginal,
    _pack,
    _prompt_pass,
    _read_pass,
    _sequences,
    _stop_ids,
)
from zip2zip.modeling.marginal import first_ids, marginal_default, min_share_default


@dataclass
class CanonicalInputStats:
    """What a `canonical_inputs_generate` call did: passes after the prompt's, codes chosen,
    steps whose code extended the open code (``rewrites``), and positions read."""

    passes: int = 0
    codes: int = 0
    rewrites: int = 0
    positions: int = 0


@dataclass
class CanonicalInputOutput:
    """``sequences``: ``[B, P + N]`` the left-padded prompt codes and the chosen codes (rows that
    stopped early padded with ``pad_token_id``), as ``generate()`` returns them; ``new_codes``:
    each row's chosen codes, up to and including its EOS; ``stats``: the counts."""

    sequences: torch.Tensor
    new_codes: list[list[int]]
    stats: CanonicalInputStats = field(default_factory=CanonicalInputStats)


@dataclass
class _Row:
    """One row's encoder (``text``: the whole text so far, its last phrase open), its state after
    the codes the model read before the open one (``committed``), the open code, its cache column
    and position, and the position of the code before it."""

    text: CodecState
    committed: CodecState
    open_code: int
    open_column: int
    open_position: int
    before_open: int


def _pending(text: CodecState) -> list[int]:
    """The open phrase's code, if any (none after a disabled id, which is never extended)."""
    code = text.pending_code
    return [] if code is None else [int(code)]


def _read_open(read: _Draft, row: _Row, code: int) -> None:
    """Note the open code's read without reading it into a copy of ``row.committed``: the
    codebook depends only on the text, so after ``code`` a decoder stands where ``row.text``
    stands, and the entries the read creates are ``row.text``'s beyond ``row.committed``'s."""
    text, vocab = row.text, row.text.config.vocab_size
    read.entries += [
        (slot, text.phrase(vocab + slot).tolist()) for slot in range(row.committed.installed, text.installed)
    ]
    read.codes.append(code)
    read.installed.append(text.installed)
    read.lengths.append(len(text.phrase(code)))


def _prompt_rows(model: Any, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> list[_Row]:
    """The rows' encoders after their prompts; refuses a prompt that is not canonical."""
    rows = []
    config = model.codebook_config()
    for row in range(input_ids.shape[0]):
        codes = input_ids[row][mask[row].bool()].tolist()
        reader = CodecState(config)
        ids, _ = reader.feed_codes(codes)
        text = CodecState(config)
        canonical = text.feed_ids(ids).tolist() + _pending(text)
        if canonical != codes:
            raise ModelInputError(
                f"canonical_inputs needs canonical prompt codes (as the tokenizer writes them): row {row}'s "
                f"{len(codes)} codes are not the canonical encoding of their text ({len(canonical)} codes)"
            )
        committed = CodecState(config)
        committed.feed_codes(codes[:-1])
        last = int(positions[row, -1])
        step = len(reader.phrase(codes[-1]))
        before = last - (step if model.config.position_mode == "base" else 1)
        rows.append(_Row(text, committed, codes[-1], input_ids.shape[1] - 1, last, before))
    return rows


def canonical_inputs_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    max_new_base_tokens: int | None = None,
    output_hypertokens: bool = True,
    marginal_first_token: bool | None = None,
    hypertoken_min_share: float | None = None,
    sampling: SamplingConfig | None = None,
    read_as: str = "codes",
) -> CanonicalInputOutput:
    """Generation with canonical inputs (see the module docstring), greedy or sampled.

    Args:
        model: a `Zip2ZipForCausalLM` (eval mode; LoRA merged or not).
        input_ids: ``[B, P]`` prompt codes, left-padded, each row canonical.
        attention_mask: ``[B, P]``, 1 for real codes (default: all real).
        max_new_tokens: codes chosen per row at most.
        eos_token_id: the code(s) that end a row (default: the model's generation config).
        pad_token_id: what pads rows that ended (default: the first EOS id, else 0).
        max_new_base_tokens: also stop a row once its chosen codes stand for this many base tokens.
        output_hypertokens: False writes base ids only (the safety valve), which the model then
            reads as the canonical codes of its text, not as a stream of base ids.
        marginal_first_token, hypertoken_min_share: as ``generate()`` takes them (the marginal's
            first token is on by default for the valve, as there).
        sampling: how each code is drawn (`zip2zip.generation.sampling`: temperature, top-k,
            top-p, as transformers draws); None: greedy.
        read_as: ``"codes"`` (the canonical codes of the text, the loop's purpose) or
            ``"base_ids"``, a probe: every written code is read back as its base ids (the prompt
            stays in codes), so that the answer is read as the valve reads its own.

    Raises:
        ModelInputError: bad shapes or counts, a right-padded batch, or a prompt row that is not
            the canonical encoding of its text.
        InvalidCodeError: a prompt row is not a valid code stream.
    """
    if max_new_tokens < 1:
        raise ModelInputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if read_as not in ("codes", "base_ids"):
        raise ModelInputError(f"read_as must be 'codes' or 'base_ids', got {read_as!r}")
    config = model.config
    share = min_share_default(config, hypertoken_min_share)
    marginal = marginal_default(config, marginal_first_token, output_hypertokens, share)
    vocab = config.vocab_size
    device = input_ids.device
    batch = input_ids.shape[0]
    prompt = _prompt_pass(model, input_ids, attention_mask, "canonical_inputs", False)
    mask, buffers, cache, logits = prompt.mask, prompt.rows, prompt.cache, prompt.logits[:, None]
    codebook, lengths = prompt.codebook, prompt.lengths
    rows = _prompt_rows(model, input_ids, mask, prompt.positions)
    stops = _stop_ids(model, eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (stops[0] if stops else 0)
    head = model.base.get_output_embeddings().weight
    softcap = model._softcap()
    hyper = model.hyper
    firsts = torch.full((batch, config.max_codebook_size), -1, dtype=torch.long, device=device)
    if marginal and codebook.shape[1]:
        firsts[:, : codebook.shape[1]] = first_ids(codebook, lengths)
    new_codes: list[list[int]] = [[] for _ in range(batch)]
    base_counts = [0] * batch
    done = [False] * batch
    stats = CanonicalInputStats()
    while True:
        if marginal:
            logits = _keep_marginal(logits, firsts, vocab, share)
        scores = logits[:, -1] if output_hypertokens else logits[:, -1, :vocab]
        chosen = sample_next(scores, sampling or SamplingConfig()).tolist()
        reads: list[_Draft | None] = [None] * batch
        for index, row in enumerate(rows):
            if done[index]:
                continue
            code = int(chosen[index])
            phrase = row.text.phrase(code)
            new_codes[index].append(code)
            base_counts[index] += len(phrase)
            stats.codes += 1
            if code in stops:
                done[index] = True
                continue
            if len(new_codes[index]) >= max_new_tokens or (
                max_new_base_tokens is not None and base_counts[index] >= max_new_base_tokens
            ):
                done[index] = True
                continue
            was_open = row.text.pending_code is not None
            closed = row.text.feed_ids(phrase).tolist()
            following = closed + _pending(row.text)
            read = _Draft()
            if read_as == "base_ids":  # the probe: the written code's base ids, nothing rewritten
                row.committed.feed_codes([row.open_code])
                row.before_open = row.open_position
                following = phrase.tolist()
            elif not was_open or closed[:1] == [row.open_code]:  # the open code stays: read what follows it
                row.committed.feed_codes([row.open_code])
                row.before_open = row.open_position
                following = following[1:] if was_open else following
            else:  # the open code grew: read its rewrite in its place
                mask[index, row.open_column] = 0
                stats.rewrites += 1
            for value in following[:-1]:
                read.read(row.committed, value)
            _read_open(read, row, following[-1])
            reads[index] = read
        live = [index for index in range(batch) if reads[index] is not None]
        if not live:
            break
        codes, installed, spans, valid, entries = _pack(reads, [row.text.installed for row in rows])
        last = [0 if r is None else len(r.codes) - 1 for r in reads]
        stats.positions += sum(len(r.codes) for r in reads if r is not None)
        starts = torch.tensor([row.before_open for row in rows], device=device)
        installed = installed.to(device)
        columns = mask.shape[1]
        with torch.no_grad():
            hidden_all, positions, mask, cache = _read_pass(
                model, buffers, cache, mask, starts, (codes, spans, valid, entries), firsts if marginal else None
            )
            at = torch.tensor(last, device=device)
            hidden = hidden_all[torch.arange(batch, device=device), at][:, None]
            picked = installed[torch.arange(batch, device=device), at][:, None]
            logits = hyper.logits(
                hidden, head, buffers.output_rows, picked, softcap, model._first_ids(buffers.codebook)
            )
        stats.passes += 1
        for index in live:
            row = rows[index]
            done_read = reads[index]
            assert done_read is not None
            row.open_code = done_read.codes[-1]
            row.open_column = columns + last[index]
            row.open_position = int(positions[index, last[index]])
            if len(done_read.codes) > 1:
                row.before_open = int(positions[index, last[index] - 1])
    return CanonicalInputOutput(_sequences(input_ids, new_codes, pad), new_codes, stats)
