# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""Hypertoken speculation: prompt lookup decoding for a zip2zip model, lossless for greedy decoding.

Prompt lookup decoding (transformers' ``prompt_lookup_num_tokens``) guesses that the text goes on
as it did after the last place where its final n-gram appeared, and checks the guess in one
forward pass. A zip2zip model can do the same, one level up:

1. **Look up in base tokens.** Each row keeps the base tokens read and written so far, indexed by
   n-gram (n = ``max_ngram`` down to 1): the most recent earlier occurrence of the text's last
   n-gram gives the base tokens that followed it. Looking up codes instead would rarely match:
   text that repeats is compressed with longer hypertokens the second time.
2. **Encode the guess with the codebook.** The guessed base tokens are cut into codes as the
   encoder cuts text: the longest phrase the codebook holds at each point, the codebook growing
   with the guess as it would with the text. So one draft code can stand for up to S base tokens.
3. **Verify in one pass.** The model reads the code chosen last and the draft codes in one
   forward pass: every draft code's hypertoken rows are encoded first, each position sees the
   codebook as it is after its code (``installed``), positions advance by phrase lengths. A draft
   code is accepted while it is the greedy code of the position before it; the first position
   that disagrees gives the next code itself. So the output is the model's greedy output, and
   every pass adds at least one code.

Rows of a batch accept different numbers of codes. Nothing is cropped: rejected positions stay in
the KV cache with their attention-mask column set to 0 (positions are explicit, so later codes
do not move). The cache grows by the draft length per pass, the text by what was accepted.

``Zip2ZipForCausalLM.generate(..., prompt_lookup_num_tokens=N)`` runs this loop with ``N`` draft
codes per pass; `speculative_generate` is the loop itself and also returns its counts.

**Hypertoken drafts for the safety valve** (``draft_source="hypertokens"`` with
``output_hypertokens=False``). The valve writes the greedy base id of every position; the same
logits also rank the hypertokens. Of the installed hypertokens whose phrase starts with the base
id the valve writes, the one the model ranks first gives the draft, the rest of its phrase: the
model's own guess of the next few base tokens, checked in the next pass like any draft. The output is still the valve's greedy output, base id for base id, in fewer passes: the
hypertoken head serves as a built-in multi-token draft. ``"both"`` takes the lookup's guess
where it agrees with the hypertoken's (or where there is no hypertoken guess), the hypertoken's
where they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from zip2zip._compat import cache_kwargs, output_cache
from zip2zip._core import CodecState
from zip2zip.errors import ModelInputError
from zip2zip.generation.fields import codebook_fields
from zip2zip.modeling.marginal import first_ids, keep_marginal_first, marginal_default, min_share_default
from zip2zip.nn import RowTable

REST_PASSES = 8
"""Passes an adaptive row drafts nothing after its one-code draft failed."""

DRAFT_SOURCES = ("lookup", "hypertokens", "both")
"""Where drafts come from: the n-gram lookup, the model's hypertoken choice (safety valve only),
or both (see the module docstring)."""


@dataclass
class SpeculationStats:
    """What a `speculative_generate` call did: forward passes after the prompt's, row passes
    (rows still generating, summed over passes), draft codes proposed and accepted, codes
    generated."""

    passes: int = 0
    row_passes: int = 0
    proposed: int = 0
    accepted: int = 0
    codes: int = 0

    @property
    def acceptance(self) -> float:
        """Accepted draft codes over proposed ones."""
        return self.accepted / max(self.proposed, 1)

    @property
    def codes_per_row_pass(self) -> float:
        """Codes a row gained per pass it took part in (1.0: no draft accepted)."""
        return (self.row_passes + self.accepted) / max(self.row_passes, 1)


@dataclass
class SpeculativeOutput:
    """``sequences``: ``[B, P + N]`` the left-padded prompt codes and the new codes, rows that
    stopped early padded with ``pad_token_id`` (as ``generate()`` returns); ``new_codes``: each
    row's new codes, up to and including its EOS; ``stats``: the counts."""

    sequences: torch.Tensor
    new_codes: list[list[int]]
    stats: SpeculationStats = field(default_factory=SpeculationStats)


class LookupIndex:
    """A row's base tokens and, for n = 1 .. ``max_ngram``, where each n-gram last ended before
    the final token (so every indexed n-gram has a continuation)."""

    def __init__(self, max_ngram: int) -> None:
        self.max_ngram = max_ngram
        self.tokens: list[int] = []
        self.ends: list[dict[tuple[int, ...], int]] = [{} for _ in range(max_ngram + 1)]

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            end = len(self.tokens) - 1  # the n-grams ending here now have a continuation
            for n in range(1, min(self.max_ngram, end + 1) + 1):
                self.ends[n][tuple(self.tokens[end - n + 1 : end + 1])] = end
            self.tokens.append(int(token))

    def propose(self, limit: int) -> list[int]:
        """Up to ``limit`` base tokens that followed the latest earlier occurrence of the longest
        final n-gram that occurred before; empty when none did."""
        for n in range(min(self.max_ngram, len(self.tokens)), 0, -1):
            end = self.ends[n].get(tuple(self.tokens[-n:]))
            if end is not None:
                return self.tokens[end + 1 : end + 1 + limit]
        return []


class PhraseIndex:
    """Phrase -> code for the entries of a row's codebook, kept up to date as entries arrive."""

    def __init__(self) -> None:
        self.codes: dict[tuple[int, ...], int] = {}
        self.known = 0

    def update(self, state: CodecState) -> None:
        if state.installed > self.known:
            table, lengths = state.phrases(self.known, state.installed)
            vocab = state.config.vocab_size
            for offset, (phrase, length) in enumerate(zip(table.tolist(), lengths.tolist())):
                self.codes[tuple(phrase[:length])] = vocab + self.known + offset
            self.known = state.installed


@dataclass
class _Rows:
    """The per-row hypertoken row buffers (``[B, slots, hidden]``), grown by the model's
    ``_grow_rows`` as entries arrive."""

    input_rows: Any = None
    output_rows: Any = None
    # ``canonical_outputs`` or a conditional head: the entries' phrases, for the canonical mask
    # of each pass or the head's first base ids.
    codebook: Any = None
    codebook_lengths: Any = None


@dataclass
class _Draft:
    """One row's codes for a pass (the chosen code, then the draft codes), the installed count
    after each, their phrase lengths, and the entries they create (slot, phrase)."""

    codes: list[int] = field(default_factory=list)
    installed: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    entries: list[tuple[int, list[int]]] = field(default_factory=list)

    def read(self, state: CodecState, code: int) -> int:
        """Read ``code`` into ``state``, noting what the pass needs; its phrase length."""
        ids, created = state.feed_codes([code])
        vocab = state.config.vocab_size
        self.entries += [(int(e) - vocab, state.phrase(int(e)).tolist()) for e in created.tolist()]
        self.codes.append(code)
        self.installed.append(state.installed)
        self.lengths.append(len(ids))
        return len(ids)


def _cut(
    state: CodecState,
    phrases: PhraseIndex | None,
    guess: list[int],
    max_codes: int,
    draft: _Draft,
    max_phrase: int | None = None,
) -> None:
    """Cut ``guess`` into at most ``max_codes`` codes, the longest phrase the codebook holds first
    (as the encoder cuts text), reading them into ``state`` (a scratch copy) and ``draft``.
    ``phrases`` indexes the entries ``state`` starts with (left unchanged: the entries the guess
    creates go into a local overlay); None cuts the guess into base ids only. ``max_phrase``
    caps the base tokens one code may stand for (default: the codebook's limit)."""
    width = state.config.max_subtokens if max_phrase is None else min(max_phrase, state.config.max_subtokens)
    vocab = state.config.vocab_size
    created: dict[tuple[int, ...], int] = {}
    at, count = 0, 0
    while at < len(guess) and count < max_codes:
        code = guess[at]
        if phrases is not None:
            for size in range(min(width, len(guess) - at), 1, -1):
                key = tuple(guess[at : at + size])
                found = created.get(key, phrases.codes.get(key))
                if found is not None:
                    code = found
                    break
        known = len(draft.entries)
        at += draft.read(state, code)
        count += 1
        for slot, phrase in draft.entries[known:]:  # entries the guess creates serve further on
            created[tuple(phrase)] = vocab + slot


def _hypertoken_guess(state: CodecState, written: int, best: int) -> list[int]:
    """The valve's draft: the rest of the phrase of ``best`` (`_best_hypertokens`: the
    hypertoken the model ranks first among those starting with ``written``, the base id written
    at the same position) when it is one; else nothing."""
    if best < state.config.vocab_size or best >= state.config.vocab_size + state.installed:
        return []
    phrase = state.phrase(best).tolist()
    return phrase[1:] if phrase[0] == written else []


def _best_hypertokens(logits: torch.Tensor, firsts: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[B, W]``: at each position, the hypertoken with the highest logit among the installed ones
    whose phrase starts with the greedy base id there (-1 where none does). ``logits`` ``[B, W,
    V + K]`` (uninstalled slots ``-inf``), ``firsts`` ``[B, K]`` each slot's first base id."""
    written = logits[..., :vocab].argmax(-1)
    hyper = logits[..., vocab : vocab + firsts.shape[1]]
    matching = firsts[:, None, :] == written[..., None]
    scores = hyper.masked_fill(~matching, float("-inf"))
    top, slot = scores.max(-1)
    return torch.where(torch.isfinite(top), slot + vocab, -1)


def _keep_marginal(logits: torch.Tensor, firsts: torch.Tensor, vocab: int, min_share: float = 0.0) -> torch.Tensor:
    """`keep_marginal_first` at every position of ``logits`` ``[B, W, V + K]`` (``firsts``
    ``[B, K]``: the slots a position has not installed are ``-inf`` in its logits)."""
    batch, width, size = logits.shape
    flat = logits.reshape(batch * width, size)
    kept = keep_marginal_first(flat, firsts.repeat_interleave(width, 0), vocab, min_share)
    return kept.view(batch, width, size)


def _merge_guesses(lookup: list[int], hypertoken: list[int]) -> list[int]:
    """``"both"``: the lookup's guess where it agrees with the hypertoken's, else the
    hypertoken's (the model's own belief), else the lookup's."""
    if not hypertoken or lookup[: len(hypertoken)] == hypertoken:
        return lookup
    return hypertoken


def _sequences(input_ids: torch.Tensor, new_codes: list[list[int]], pad: int) -> torch.Tensor:
    longest = max((len(c) for c in new_codes), default=0)
    tail = input_ids.new_full((input_ids.shape[0], longest), pad)
    for row, codes in enumerate(new_codes):
        tail[row, : len(codes)] = torch.tensor(codes, dtype=input_ids.dtype)
    return torch.cat([input_ids, tail], 1)


def _write_rows(model: Any, rows: Any, entries: list[tuple[int, int, list[int]]], device: torch.device) -> None:
    """Encode the entries' input and output rows into the per-row buffers (growing them)."""
    width = model.config.max_subtokens
    head = model.base.get_output_embeddings().weight
    table = torch.zeros(len(entries), width, dtype=torch.long)
    lengths = torch.zeros(len(entries), dtype=torch.long)
    for i, (_, _, phrase) in enumerate(entries):
        table[i, : len(phrase)] = torch.tensor(phrase)
        lengths[i] = len(phrase)
    table, lengths = table.to(device), lengths.to(device)
    hyper = model.hyper
    rows_in = hyper.encode_phrases(model._input_lookup(), table, lengths, hyper.input_encoder)
    rows_out = hyper.encode_phrases(RowTable(head), table, lengths, hyper.output_encoder)
    model._grow_rows(rows, max(slot for _, slot, _ in entries) + 1)
    index_rows = torch.tensor([r for r, _, _ in entries], device=device)
    index_slots = torch.tensor([s for _, s, _ in entries], device=device)
    rows.input_rows[index_rows, index_slots] = rows_in.to(rows.input_rows.dtype)
    rows.output_rows[index_rows, index_slots] = rows_out.to(rows.output_rows.dtype)
    if rows.codebook is not None:
        rows.codebook[index_rows, index_slots] = table
        rows.codebook_lengths[index_rows, index_slots] = lengths


def _stop_ids(model: Any, eos_token_id: int | Sequence[int] | None) -> list[int]:
    if eos_token_id is None:
        eos_token_id = getattr(model.generation_config, "eos_token_id", None)
    if eos_token_id is None:
        return []
    return [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(i) for i in eos_token_id]


@dataclass
class _Prompt:
    """What the prompt's pass leaves: the attention mask (a copy, to grow), the row buffers, the
    KV cache, the positions, the last position's logits ``[B, V + K]`` and the codebook fields."""

    mask: torch.Tensor
    rows: _Rows
    cache: Any
    positions: torch.Tensor
    logits: torch.Tensor
    codebook: torch.Tensor
    lengths: torch.Tensor


def _prompt_pass(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, what: str, keep_phrases: bool
) -> _Prompt:
    """Check a left-padded prompt batch and run its pass: every entry's rows, the last position's
    logits only. ``keep_phrases`` keeps the entries' phrases beside the rows (the canonical mask;
    a conditional head's first base ids always need them)."""
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ModelInputError(f"input_ids must be [B, P] with P >= 1, got {tuple(input_ids.shape)}")
    device = input_ids.device
    # A copy: the loops grow it and mask columns in it; the caller's stays as it was.
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device).long().clone()
    if mask.shape != input_ids.shape:
        raise ModelInputError(f"attention_mask must be shaped like input_ids {tuple(input_ids.shape)}")
    if not bool(mask[:, -1].all()):
        raise ModelInputError(f"{what} needs left padding: the last position of every row must be real")
    hyper = model.hyper
    head = model.base.get_output_embeddings().weight
    fields = codebook_fields(model.codebook_config(), input_ids, mask)
    codebook, lengths = fields["codebook"], fields["codebook_lengths"]
    rows = _Rows()
    cache = DynamicCache(config=model.base.config)
    with torch.no_grad():
        rows.input_rows = hyper.encode_rows(model._input_lookup(), codebook, lengths, hyper.input_encoder)
        rows.output_rows = hyper.encode_rows(RowTable(head), codebook, lengths, hyper.output_encoder)
        if keep_phrases or hyper.conditional is not None:
            rows.codebook, rows.codebook_lengths = codebook.clone(), lengths.clone()
        positions = hyper.position_ids(input_ids, lengths, mask, model.config.position_mode)
        embeds = hyper.input_embeddings(input_ids, model.base.get_input_embeddings(), rows.input_rows)
        outputs = model.base.get_decoder()(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, **cache_kwargs(cache)
        )
        last = outputs.last_hidden_state[:, -1:]
        logits = hyper.logits(
            last, head, rows.output_rows, fields["installed"][:, -1:], model._softcap(), model._first_ids(rows.codebook)
        )[:, -1]
    return _Prompt(mask, rows, output_cache(outputs), positions, logits, codebook, lengths)


def _pack(
    reads: Sequence[_Draft | None], ended_installed: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int, list[int]]]]:
    """One pass's ``[B, W]`` codes, installed counts, phrase lengths and validity from each row's
    reads, and the entries they create (row, slot, phrase). A row with no reads (it ended) reads
    one base id, whose result is never used, with its installed count ``ended_installed[row]``."""
    batch = len(reads)
    width = max(len(r.codes) for r in reads if r is not None)
    codes = torch.zeros(batch, width, dtype=torch.long)
    installed = torch.zeros(batch, width, dtype=torch.long)
    spans = torch.zeros(batch, width, dtype=torch.long)
    valid = torch.zeros(batch, width, dtype=torch.long)
    entries: list[tuple[int, int, list[int]]] = []
    for row, planned in enumerate(reads):
        if planned is None:
            valid[row, 0] = 1
            installed[row] = ended_installed[row]
            continue
        n = len(planned.codes)
        codes[row, :n] = torch.tensor(planned.codes)
        installed[row, :n] = torch.tensor(planned.installed)
        installed[row, n:] = planned.installed[-1]
        spans[row, :n] = torch.tensor(planned.lengths)
        valid[row, :n] = 1
        entries += [(row, slot, phrase) for slot, phrase in planned.entries]
    return codes, installed, spans, valid, entries


def _read_pass(
    model: Any,
    rows: _Rows,
    cache: Any,
    mask: torch.Tensor,
    starts: torch.Tensor,
    pass_codes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int, list[int]]]],
    firsts: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """Write the rows of the entries a pass creates (and their first base ids into ``firsts``,
    when given), then read the pass's ``[B, W]`` codes (`_pack`: codes, phrase lengths, validity,
    entries) after each row's position ``starts``. Returns the hidden states, the positions, the
    grown attention mask and the cache."""
    codes, spans, valid, entries = pass_codes
    device = starts.device
    if entries:
        _write_rows(model, rows, entries, device)
        if firsts is not None:
            for row, slot, phrase in entries:
                firsts[row, slot] = phrase[0]
    valid = valid.to(device)
    steps = spans.to(device) if model.config.position_mode == "base" else valid
    positions = starts[:, None] + steps.cumsum(1)
    mask = torch.cat([mask, valid], 1)
    embeds = model.hyper.input_embeddings(codes.to(device), model.base.get_input_embeddings(), rows.input_rows)
    outputs = model.base.get_decoder()(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, **cache_kwargs(cache)
    )
    return outputs.last_hidden_state, positions, mask, output_cache(outputs)


def speculative_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int,
    num_draft_codes: int = 8,
    max_ngram: int = 3,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    max_new_base_tokens: int | None = None,
    output_hypertokens: bool = True,
    max_draft_phrase: int | None = None,
    adaptive: bool = True,
    draft_source: str = "lookup",
    marginal_first_token: bool | None = None,
    hypertoken_min_share: float | None = None,
) -> SpeculativeOutput:
    """Greedy generation with hypertoken speculation (see the module docstring).

    Args:
        model: a `Zip2ZipForCausalLM` (eval mode; LoRA merged or not).
        input_ids: ``[B, P]`` prompt codes, left-padded.
        attention_mask: ``[B, P]``, 1 for real codes (default: all real).
        max_new_tokens: new codes per row at most.
        num_draft_codes: draft codes verified per pass (0: plain greedy decoding, one code a pass).
        max_ngram: the longest final n-gram of base tokens looked up.
        eos_token_id: the code(s) that end a row (default: the model's generation config).
        pad_token_id: what pads rows that ended (default: the first EOS id, else 0).
        max_new_base_tokens: also stop a row once its new codes stand for this many base tokens.
        output_hypertokens: False restricts the output to base ids (the safety valve); the draft
            then holds base ids only.
        max_draft_phrase: the most base tokens one draft code may stand for (default: the
            codebook's S; 1: drafts of base ids). A model that writes shorter hypertokens than
            the encoder cuts accepts more of a draft cut shorter; the output is the same.
        adaptive: size each row's drafts by how the last one fared: halved when none of it was
            accepted (a one-code draft that fails leaves the row drafting nothing for
            `REST_PASSES` passes, plain steps, then one code again), doubled (up to
            ``num_draft_codes``) when all of it was; so a row whose guesses fail does not
            encode, verify and cache long drafts. The output is the same either way; False
            keeps ``num_draft_codes`` throughout.
        draft_source: ``"lookup"`` (the n-gram lookup), ``"hypertokens"`` (the rest of the
            phrase of the hypertoken the model ranks first among those starting with the base id
            written: the safety valve's built-in draft, so ``output_hypertokens=False`` only) or
            ``"both"`` (see the module docstring). Hypertoken guesses are not sized by
            ``adaptive`` (they are at most S - 1 base ids); ``num_draft_codes`` caps them.
        marginal_first_token: each position's choice is made among the codes starting with the
            marginal's most likely next base token (`zip2zip.modeling.marginal`), as
            ``generate(marginal_first_token=True)`` chooses; drafts are verified against it.
            None: as ``generate()`` decides (the config's setting, else on for the valve only).
        hypertoken_min_share: as ``generate(hypertoken_min_share=...)`` (None: the config's, 0
            unless set): with the marginal, a hypertoken is kept only at that share of its first
            token's probability; above 0 it turns the marginal on.

    Raises:
        ModelInputError: bad shapes or counts, a right-padded batch, or an unknown or
            unsupported ``draft_source``.
        InvalidCodeError: a prompt row is not a valid code stream.
    """
    if max_new_tokens < 1 or num_draft_codes < 0 or max_ngram < 1:
        raise ModelInputError(
            "max_new_tokens must be >= 1, num_draft_codes >= 0 and max_ngram >= 1; got "
            f"{max_new_tokens}, {num_draft_codes} and {max_ngram}"
        )
    if max_draft_phrase is not None and max_draft_phrase < 1:
        raise ModelInputError(f"max_draft_phrase must be at least 1, got {max_draft_phrase}")
    if draft_source not in DRAFT_SOURCES:
        raise ModelInputError(f"draft_source must be one of {', '.join(DRAFT_SOURCES)}; got {draft_source!r}")
    if draft_source != "lookup" and output_hypertokens:
        raise ModelInputError(
            f"draft_source={draft_source!r} drafts for the safety valve and needs output_hypertokens=False "
            "(with hypertoken output the model writes the hypertoken itself)"
        )
    use_lookup, use_hypertokens = draft_source != "hypertokens", draft_source != "lookup"
    config = model.config
    hypertoken_min_share = min_share_default(config, hypertoken_min_share)
    marginal_first_token = marginal_default(config, marginal_first_token, output_hypertokens, hypertoken_min_share)
    canonical = bool(getattr(config, "canonical_outputs", False)) and output_hypertokens
    vocab = config.vocab_size
    device = input_ids.device
    batch = input_ids.shape[0]
    prompt = _prompt_pass(model, input_ids, attention_mask, "speculative generation", canonical)
    mask, rows, cache, positions, logits = prompt.mask, prompt.rows, prompt.cache, prompt.positions, prompt.logits
    codebook, lengths = prompt.codebook, prompt.lengths
    stops = _stop_ids(model, eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (stops[0] if stops else 0)
    head = model.base.get_output_embeddings().weight
    softcap = model._softcap()
    hyper = model.hyper
    last_position = positions[:, -1].clone()
    # Each slot's first base id (for the marginal's first token and the hypertoken drafts).
    track_firsts = use_hypertokens or marginal_first_token
    firsts = torch.full((batch, config.max_codebook_size), -1, dtype=torch.long, device=device)
    if track_firsts and codebook.shape[1]:
        firsts[:, : codebook.shape[1]] = first_ids(codebook, lengths)
    if marginal_first_token:
        logits = _keep_marginal(logits[:, None], firsts, vocab, hypertoken_min_share)[:, 0]
    chosen = (logits[:, :vocab] if not output_hypertokens else logits).argmax(-1).tolist()
    # At each position, the best hypertoken starting with the base id written there.
    best = _best_hypertokens(logits[:, None], firsts, vocab)[:, 0].tolist() if use_hypertokens else [0] * batch

    trackers, lookups, phrase_index = [], [], []
    for row in range(batch):
        tracker = CodecState(model.codebook_config())
        ids, _ = tracker.feed_codes(input_ids[row][mask[row].bool()].cpu().numpy())
        lookup = LookupIndex(max_ngram)
        lookup.extend(ids.tolist())
        trackers.append(tracker)
        lookups.append(lookup)
        phrase_index.append(PhraseIndex())
    new_codes: list[list[int]] = [[] for _ in range(batch)]
    draft_sizes = [num_draft_codes] * batch
    resting = [0] * batch
    looked_up = [False] * batch  # whether a row's draft of the pass came from the lookup
    base_counts = [0] * batch
    done = [False] * batch
    stats = SpeculationStats()

    def ends(row: int, code: int, length: int) -> bool:
        """Note a code read into a row's tracker as generated; whether the row ends with it."""
        new_codes[row].append(code)
        base_counts[row] += length
        stats.codes += 1
        return (
            code in stops
            or len(new_codes[row]) >= max_new_tokens
            or (max_new_base_tokens is not None and base_counts[row] >= max_new_base_tokens)
        )

    while True:
        drafts: list[_Draft | None] = [None] * batch
        for row in range(batch):
            if done[row]:
                continue
            draft = _Draft()
            length = draft.read(trackers[row], chosen[row])  # the chosen code is output already
            lookups[row].extend(trackers[row].phrase(chosen[row]).tolist())
            if ends(row, chosen[row], length):
                done[row] = True
                continue
            left = max_new_tokens - len(new_codes[row])
            own = _hypertoken_guess(trackers[row], chosen[row], best[row])[:num_draft_codes] if use_hypertokens else []
            if draft_sizes[row] == 0 and num_draft_codes:  # resting after failed drafts, then one code again
                resting[row] -= 1
                draft_sizes[row] = 1 if resting[row] <= 0 else 0
            budget = min(draft_sizes[row], left)
            guess = lookups[row].propose(budget * config.max_subtokens) if use_lookup and budget > 0 else []
            looked_up[row] = bool(guess) and (not own or guess[: len(own)] == own)
            guess = _merge_guesses(guess, own)
            if not looked_up[row]:  # a hypertoken guess: sized by num_draft_codes, not by how drafts fared
                budget = min(num_draft_codes, left)
            elif own:  # the lookup agrees with the hypertoken: at least the hypertoken's length
                budget = max(budget, min(len(own), left))
            if budget > 0 and guess:
                phrase_index[row].update(trackers[row])
                phrases = phrase_index[row] if output_hypertokens else None
                _cut(trackers[row].copy(), phrases, guess, budget, draft, max_draft_phrase)
            drafts[row] = draft
        live = [row for row in range(batch) if drafts[row] is not None]
        if not live:
            break
        codes, installed, spans, valid, entries = _pack(drafts, [t.installed for t in trackers])
        width = codes.shape[1]
        stats.proposed += sum(len(d.codes) - 1 for d in drafts if d is not None)
        codes, installed, valid = codes.to(device), installed.to(device), valid.to(device)
        with torch.no_grad():
            hidden, positions, mask, cache = _read_pass(
                model,
                rows,
                cache,
                mask,
                last_position,
                (codes, spans, valid, entries),
                firsts if track_firsts else None,
            )
            logits = hyper.logits(hidden, head, rows.output_rows, installed, softcap, model._first_ids(rows.codebook))
            if canonical:  # as each plain decoding step masks after the code it reads
                model._mask_non_canonical(logits, codes, rows.codebook, rows.codebook_lengths, installed)
            if marginal_first_token:  # as generate()'s logits processor does at each step
                logits = _keep_marginal(logits, firsts, vocab, hypertoken_min_share)
        greedy = (logits[..., :vocab] if not output_hypertokens else logits).argmax(-1).tolist()
        best_all = _best_hypertokens(logits, firsts, vocab).tolist() if use_hypertokens else None
        stats.passes += 1
        stats.row_passes += len(live)
        kept = torch.zeros_like(valid)
        kept[:, 0] = 1
        for row in live:
            verified = drafts[row]
            assert verified is not None
            accepted = 0
            while accepted + 1 < len(verified.codes) and greedy[row][accepted] == verified.codes[accepted + 1]:
                accepted += 1
                code = verified.codes[accepted]
                ids, _ = trackers[row].feed_codes([code])
                lookups[row].extend(ids.tolist())
                if ends(row, code, len(ids)):
                    done[row] = True
                    break
            stats.accepted += accepted
            if adaptive and looked_up[row] and len(verified.codes) > 1:  # size the next lookup draft by it
                if accepted == len(verified.codes) - 1:
                    draft_sizes[row] = min(num_draft_codes, draft_sizes[row] * 2)
                elif accepted == 0:
                    draft_sizes[row] //= 2
                    resting[row] = REST_PASSES if draft_sizes[row] == 0 else 0
            chosen[row] = greedy[row][accepted]
            if best_all is not None:
                best[row] = best_all[row][accepted]
            kept[row, : accepted + 1] = 1
            last_position[row] = positions[row, accepted]
        # Rejected draft positions stay in the cache, masked out for every later position.
        mask[:, -width:] = mask[:, -width:] * kept
    return SpeculativeOutput(_sequences(input_ids, new_codes, pad), new_codes, stats)
