# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""Greedy or sampled generation with a static KV cache and CUDA graphs: the fast decoding loop.

`StaticGenerator.for_base` (a plain causal LM) and `StaticGenerator.for_zip2zip` (a
`Zip2ZipForCausalLM`) run the same loop, so that their costs can be compared
(``zip2zip bench generate``):

- the KV cache is transformers' ``StaticCache``, allocated once; the attention mask is a
  preallocated ``[B, max_cache_len]`` bias that each step opens one column of;
- on CUDA each decoding step is replayed from captured CUDA graphs, and the loop runs one step
  ahead: the next step is queued before the host reads the current step's ids back (one small
  copy, as any loop that watches for EOS does), so the host's work overlaps the GPU's.

For a zip2zip model a step is three graphs. The decoder graph embeds the codes chosen by the
previous step (already on the GPU; hypertoken rows from preallocated ``[B, K + 1, hidden]``
buffers, slot K taking padding), advances the positions by their phrase lengths (a device
table) and runs the base model one position per row: it needs nothing from the host, so it is
queued at once. Meanwhile the host steps every row's codebook in one Rust call
(`zip2zip.CodecBatch.step`, which copies only the new codes in) and sends one small packed
buffer: installed counts and the phrases of the entries just created. On a second stream an
encoder graph (one per number of new entries: 1, 2, 4, ... B x S) writes only those entries'
rows; the logits graph then takes the greedy code over the base logits and the available hyper
logits. A greedy code is never a KwKwK code (the entry its own reading creates is not offered);
a forced one may be, and that step runs serially (encoders, then decoder).

Sampling (``sampling=SamplingConfig(do_sample=True, temperature=..., top_k=..., top_p=...)``,
`zip2zip.generation.sampling`) runs inside the same graphs: the logits graph draws the next code
over the full ``[B, V + K]`` logits (the entries not installed at ``-inf``), and
``generate(seed=...)`` seeds the draws.

Models with sliding-window layers are not supported (the mask here is a plain causal one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zip2zip._core import CodecBatch, CodecState
from zip2zip.errors import ModelInputError
from zip2zip.generation.sampling import SamplingConfig
from zip2zip.generation.static_loop import StaticLoop, buckets, stop_ids
from zip2zip.modeling.canonical import non_canonical_mask
from zip2zip.modeling.marginal import keep_marginal_first, marginal_default, min_share_default
from zip2zip.nn import RowTable
from zip2zip.nn.conditional import GroupTables, group_tables
from zip2zip.ops.reference import softcapped


class StaticGenerator(StaticLoop):
    """Greedy generation for a fixed batch size and cache length; see the module docstring and
    `StaticLoop` for the arguments. Build with :meth:`for_base` or :meth:`for_zip2zip`."""

    # ------------------------------------------------------------------ construction

    @classmethod
    def for_base(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int,
        max_cache_len: int,
        cuda_graphs: bool | None = None,
        prefill_graphs: bool = False,
        sampling: SamplingConfig | None = None,
    ) -> BaseStaticGenerator:
        """A generator for a plain causal LM and its Hugging Face tokenizer."""
        return BaseStaticGenerator(
            model,
            tokenizer,
            batch_size=batch_size,
            max_cache_len=max_cache_len,
            cuda_graphs=cuda_graphs,
            prefill_graphs=prefill_graphs,
            sampling=sampling,
        )

    @classmethod
    def for_zip2zip(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int,
        max_cache_len: int,
        cuda_graphs: bool | None = None,
        prefill_graphs: bool = False,
        sampling: SamplingConfig | None = None,
        output_hypertokens: bool = True,
    ) -> Zip2ZipStaticGenerator:
        """A generator for a `Zip2ZipForCausalLM` and its `Zip2ZipTokenizer`. For speed, merge a
        LoRA adapter first (`Zip2ZipForCausalLM.merge_lora`). ``output_hypertokens=False`` writes
        base ids only (the safety valve, as ``generate(output_hypertokens=False)``); the model's
        ``config.marginal_first_token`` applies as in ``generate()`` (unset: on for the valve)."""
        return Zip2ZipStaticGenerator(
            model,
            tokenizer,
            batch_size=batch_size,
            max_cache_len=max_cache_len,
            cuda_graphs=cuda_graphs,
            prefill_graphs=prefill_graphs,
            sampling=sampling,
            output_hypertokens=output_hypertokens,
        )


class BaseStaticGenerator(StaticGenerator):
    """`StaticGenerator` for a plain causal LM: one graph per step, which feeds its greedy id
    back as the next step's input."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int,
        max_cache_len: int,
        cuda_graphs: bool | None = None,
        prefill_graphs: bool = False,
        sampling: SamplingConfig | None = None,
    ) -> None:
        super().__init__(
            model,
            batch_size=batch_size,
            max_cache_len=max_cache_len,
            eos_token_id=stop_ids(model, tokenizer),
            cuda_graphs=cuda_graphs,
            prefill_graphs=prefill_graphs,
            sampling=sampling,
        )
        self.tokenizer = tokenizer

    def _graph_keys(self) -> list[Any]:
        return ["step"]

    def _body(self, key: Any) -> None:
        self.positions.add_(1)
        embeds = self.embedding(self.codes_in[:, None])
        hidden = self._decode(embeds, self.positions[:, None], self._step_bias())
        logits = F.linear(hidden[:, -1], self.head)
        if self.softcap is not None:
            logits = softcapped(logits, self.softcap)
        self.next_codes.copy_(self._pick(logits))
        self.codes_in.copy_(self.next_codes)
        self.cursor.add_(1)

    def _queue_ahead(self, step: int, forced_codes: np.ndarray | None) -> bool:
        if forced_codes is not None:
            self._feed(forced_codes, step)
        self._run("step")
        return True

    def _queue_rest(self, step: int, ahead: bool) -> None:
        return  # the whole step was queued ahead

    def _prefill_inputs(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        ids, mask = self._left_pad(rows)
        positions = np.maximum((mask.cumsum(1) - 1) * mask, 0)
        return {"ids": torch.from_numpy(ids), "mask": torch.from_numpy(mask), "positions": torch.from_numpy(positions)}

    def _prefill_body(self, inputs: dict[str, torch.Tensor]) -> None:
        ids, mask, positions = inputs["ids"], inputs["mask"], inputs["positions"]
        hidden = self._decode(self.embedding(ids), positions, self._prefill_bias(mask))
        logits = F.linear(hidden[:, -1], self.head)
        if self.softcap is not None:
            logits = softcapped(logits, self.softcap)
        self.next_codes.copy_(self._pick(logits))
        self.codes_in.copy_(self.next_codes)
        self.positions.copy_(positions[:, -1])
        self.cursor.fill_(ids.shape[1])

    def _texts(self, tokens: list[list[int]]) -> list[str]:
        return [str(self.tokenizer.decode(t)) for t in tokens]


class Zip2ZipStaticGenerator(StaticGenerator):
    """`StaticGenerator` for a `Zip2ZipForCausalLM`; see the module docstring."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int,
        max_cache_len: int,
        cuda_graphs: bool | None = None,
        prefill_graphs: bool = False,
        sampling: SamplingConfig | None = None,
        output_hypertokens: bool = True,
    ) -> None:
        base = model.base
        if model.has_adapter:  # run through the peft wrapper's model (LoRA layers included)
            base = base.get_base_model()
        super().__init__(
            base,
            batch_size=batch_size,
            max_cache_len=max_cache_len,
            eos_token_id=stop_ids(model, tokenizer),
            cuda_graphs=cuda_graphs,
            prefill_graphs=prefill_graphs,
            sampling=sampling,
        )
        if tokenizer.config != model.codebook_config():
            raise ModelInputError("the tokenizer's codebook config is not the model's")
        self.model = model
        self.tokenizer = tokenizer
        config = model.config
        self.vocab = config.vocab_size
        self.slots = config.max_codebook_size
        self.width = config.max_subtokens
        self.compressed = config.position_mode == "compressed"
        hidden = self.head.shape[1]
        self.input_rows = torch.zeros(batch_size, self.slots + 1, hidden, dtype=self.dtype, device=self.device)
        self.output_rows = torch.zeros_like(self.input_rows)
        self.entry_lengths = torch.ones(batch_size, self.slots + 1, dtype=torch.long, device=self.device)
        # ``canonical_outputs`` (not for the valve, as in generate()) and ``marginal_first_token``:
        # the entries' phrases too, for the canonical mask and the marginal's first tokens.
        self.valve = not output_hypertokens
        self.canonical = bool(getattr(config, "canonical_outputs", False)) and self.slots > 0 and not self.valve
        self.min_share = min_share_default(config, None)
        self.marginal = marginal_default(config, None, output_hypertokens, self.min_share) and self.slots > 0
        # A conditional head (`zip2zip.nn.conditional`) needs each entry's first base id.
        self.conditional = model.hyper.conditional is not None and self.slots > 0
        self.keep_phrases = self.canonical or self.marginal or self.conditional
        if self.keep_phrases:
            self.entry_phrases = torch.zeros(
                batch_size, self.slots + 1, self.width, dtype=torch.long, device=self.device
            )
        if self.conditional:
            # The head's tables of each slot (`zip2zip.nn.conditional.group_tables`: what depends
            # on the slot's row and first id alone), written with the slot's rows instead of
            # recomputed for every slot at every step.
            head = model.hyper.conditional
            assert head is not None
            inner = (batch_size, self.slots + 1, head.inner_size)
            zeros = dict(dtype=torch.float32, device=self.device)
            self.table_parts = (
                torch.zeros(inner, **zeros),  # first_part
                torch.zeros(inner, **zeros),  # hyper_out
                torch.zeros(batch_size, self.slots + 1, **zeros),  # hyper_bias
                torch.zeros(inner, **zeros),  # stop_out
                torch.zeros(batch_size, self.slots + 1, **zeros),  # stop_bias
            )
        self.hidden = torch.zeros(batch_size, 1, hidden, dtype=self.dtype, device=self.device)
        self.max_new = batch_size * self.width
        self.sizes = buckets(self.max_new)
        self.packed_size = batch_size + self.max_new * (self.width + 2)
        self.packed = torch.zeros(self.packed_size, dtype=torch.long, device=self.device)
        self.host_packed = torch.zeros(self.packed_size, dtype=torch.long, pin_memory=self.device.type == "cuda")
        self.batch: CodecBatch | None = None
        self.prompt_states: list[CodecState] = []
        self.side_stream = torch.cuda.Stream(self.device) if self.use_graphs else None
        self._bucket = 0

    # ------------------------------------------------------------------ tensor work

    def _graph_keys(self) -> list[Any]:
        return [("decoder",), ("logits",)] + [(part, n) for n in self.sizes if n for part in ("encode", "serial")]

    def _capture_stream(self, key: Any) -> torch.cuda.Stream | None:
        return self.side_stream if key[0] == "encode" else None

    def _layout(self, n: int) -> tuple[slice, slice, slice, slice]:
        """Where the packed buffer holds: installed counts, then (for ``n`` new entries) their
        flat row-buffer indices, phrases and lengths."""
        b, s = self.batch_size, self.width
        return slice(0, b), slice(b, b + n), slice(b + n, b + n + n * s), slice(b + n + n * s, b + 2 * n + n * s)

    def _safe_inputs(self) -> None:
        super()._safe_inputs()
        self.host_packed.zero_()
        for n in self.sizes:
            _, index, _, lengths = self._layout(n)
            self.host_packed[index] = self.slots  # row 0's padding slot
            self.host_packed[lengths] = 1
        self.packed.copy_(self.host_packed)
        self.positions.zero_()
        self.cursor.zero_()

    def _encode_new(self, bucket: int) -> None:
        """Encode the entries the host sent into their slots of the row buffers."""
        model, hyper = self.model, self.model.hyper
        _, index_at, phrases_at, lengths_at = self._layout(bucket)
        phrases = self.packed[phrases_at].view(bucket, self.width)
        lengths = self.packed[lengths_at]
        index = self.packed[index_at]
        hidden_size = self.input_rows.shape[-1]
        rows_in = hyper.encode_phrases(model._input_lookup(), phrases, lengths, hyper.input_encoder)
        rows_out = hyper.encode_phrases(RowTable(self.head), phrases, lengths, hyper.output_encoder)
        self.input_rows.view(-1, hidden_size).index_copy_(0, index, rows_in.to(self.dtype))
        self.output_rows.view(-1, hidden_size).index_copy_(0, index, rows_out.to(self.dtype))
        self.entry_lengths.view(-1).index_copy_(0, index, lengths)
        if self.keep_phrases:
            self.entry_phrases.view(-1, self.width).index_copy_(0, index, phrases)
        if self.conditional:
            made = self._slot_tables(rows_out, phrases[:, 0])
            for buffer, part in zip(self.table_parts, made[1:]):
                buffer.view(-1, *buffer.shape[2:]).index_copy_(0, index, part[0].to(buffer.dtype))

    def _run_decoder(self) -> None:
        """Embed ``codes_in``, advance positions by their phrase lengths, run the decoder."""
        codes = self.codes_in
        if self.compressed:
            self.positions.add_(1)
        else:
            slots = torch.where(codes >= self.vocab, codes - self.vocab, self.slots)  # slot K: length 1
            spans = torch.gather(self.entry_lengths, 1, slots[:, None])[:, 0]
            self.positions.add_(torch.where(codes >= self.vocab, spans, 1))
        embeds = self.model.hyper.input_embeddings(codes[:, None], self.embedding, self.input_rows)
        self.hidden.copy_(self._decode(embeds, self.positions[:, None], self._step_bias()))
        self.cursor.add_(1)

    def _choose(self) -> None:
        """The next code over base logits and available hyper logits, greedy or sampled. Greedy
        without soft-capping compares the two maxima instead of concatenating ``[B, V + K]``
        logits: the same choice (ties go to the base id, as argmax over the concatenation gives)."""
        installed = self.packed[self._layout(0)[0]]
        rows = self.output_rows[:, : self.slots]
        excluded = None
        if self.canonical:  # the codes canonical encoding cannot emit after the code just read
            excluded = non_canonical_mask(
                self.codes_in[:, None],
                self.entry_phrases[:, : self.slots],
                self.entry_lengths[:, : self.slots],
                installed[:, None],
                self.vocab,
            )[:, 0]
        if self.softcap is not None or self.sampling.do_sample or self.marginal or self.valve or self.conditional:
            logits = self.model.hyper.logits(
                self.hidden, self.head, rows, installed[:, None], self.softcap, self._first_ids(), self._tables()
            )[:, -1]
            if excluded is not None:
                logits = logits.masked_fill(excluded, float("-inf"))
            self.next_codes.copy_(self._pick(self._restrict(logits)))
        else:
            base = F.linear(self.hidden, self.head)[:, -1]
            scores = (self.hidden @ rows.transpose(1, 2).to(self.hidden.dtype))[:, -1]
            available = torch.arange(self.slots, device=self.device)[None, :] < installed[:, None]
            if excluded is not None:
                base = base.masked_fill(excluded[:, : self.vocab], float("-inf"))
                available = available & ~excluded[:, self.vocab :]
            base_best = base.argmax(-1)
            scores = scores.masked_fill(~available, float("-inf"))
            hyper_best = scores.argmax(-1)
            better = scores.gather(1, hyper_best[:, None])[:, 0] > base.gather(1, base_best[:, None])[:, 0]
            self.next_codes.copy_(torch.where(better, hyper_best + self.vocab, base_best))
        self.codes_in.copy_(self.next_codes)

    def _slot_tables(self, rows_out: torch.Tensor, first: torch.Tensor) -> GroupTables:
        """`group_tables` of ``[n, H]`` output rows (rounded to the buffers' dtype first, as the
        rows the logits read are) and their first ids: each field ``[1, n, ...]``."""
        head = self.model.hyper.conditional
        assert head is not None
        rows = rows_out.to(self.dtype).to(self.hidden.dtype)
        return group_tables(head, rows[None], self.head, first[None])

    def _prefill_tables(self, rows_out: torch.Tensor, first: torch.Tensor, batch: int, entries: int) -> None:
        """The tables of the prompt's ``entries`` slots of every row (a conditional head only)."""
        if self.conditional:
            made = self._slot_tables(rows_out, first)
            for buffer, part in zip(self.table_parts, made[1:]):
                buffer[:, :entries] = part.view(batch, entries, *part.shape[2:]).to(buffer.dtype)

    def _tables(self) -> GroupTables | None:
        """The kept `GroupTables` of the ``K`` slots (None without a conditional head)."""
        if not self.conditional:
            return None
        parts = (part[:, : self.slots] for part in self.table_parts)
        return GroupTables(self.entry_phrases[:, : self.slots, 0], *parts)

    def _first_ids(self) -> torch.Tensor | None:
        """Each slot's first base id, for a conditional head (stale in slots no row has installed,
        whose logits are ``-inf`` already)."""
        return self.entry_phrases[:, : self.slots, 0] if self.conditional else None

    def _restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """``marginal_first_token`` (the codes starting with the marginal's most likely token),
        then the valve (base ids only), as ``generate()``'s logits processors apply them. The
        slots no row has installed are ``-inf`` already, so their stale phrases count for none."""
        if self.marginal:
            logits = keep_marginal_first(logits, self.entry_phrases[:, : self.slots, 0], self.vocab, self.min_share)
        if self.valve:
            logits = torch.cat([logits[:, : self.vocab], torch.full_like(logits[:, self.vocab :], float("-inf"))], 1)
        return logits

    def _body(self, key: Any) -> None:
        part = key[0]
        if part == "decoder":
            self._run_decoder()
        elif part == "logits":
            self._choose()
        elif part == "encode":
            self._encode_new(key[1])
        else:  # "serial": a KwKwK step, whose code reads an entry created by its own reading
            self._encode_new(key[1])
            self._run_decoder()
            self._choose()

    # ------------------------------------------------------------------ host side

    def _queue_ahead(self, step: int, forced_codes: np.ndarray | None) -> bool:
        if forced_codes is not None:
            assert self.batch is not None
            installed = self.batch.installed
            if np.any(forced_codes - self.vocab == installed):  # KwKwK: its entry is not encoded yet
                self._feed(forced_codes, step)
                return False
            self._feed(forced_codes, step)
        self._run(("decoder",))
        return True

    def _observe(self, codes: np.ndarray, kwkwk: bool) -> np.ndarray:
        assert self.batch is not None
        lengths, installed, rows, slots, phrases, phrase_lengths = self.batch.step(codes)
        new = len(rows)
        if new and not kwkwk and np.any(codes[rows] - self.vocab == slots):
            raise RuntimeError("a KwKwK code was decoded ahead of its entry")  # greedy codes never are
        bucket = next(b for b in self.sizes if b >= new)
        installed_at, index_at, phrases_at, lengths_at = self._layout(bucket)
        packed = self.host_packed.numpy()
        packed[installed_at] = installed
        if bucket:
            index = packed[index_at]
            index[:new] = rows.astype(np.int64) * (self.slots + 1) + slots
            index[new:] = self.slots  # row 0's padding slot
            table = packed[phrases_at].reshape(bucket, self.width)
            table[:new] = phrases
            table[new:] = 0
            entry_lengths = packed[lengths_at]
            entry_lengths[:new] = phrase_lengths
            entry_lengths[new:] = 1
        self._bucket = bucket
        return lengths.astype(np.int64)

    def _queue_rest(self, step: int, ahead: bool) -> None:
        bucket = self._bucket
        used = self._layout(bucket)[3].stop if bucket else self.batch_size
        if not ahead:
            self.packed[:used].copy_(self.host_packed[:used], non_blocking=True)
            self._run(("serial", bucket) if bucket else ("decoder",))
            if not bucket:
                self._run(("logits",))
            return
        if bucket and self.side_stream is not None:
            # The encoders run beside the queued decoder; the logits wait for both.
            main = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self.side_stream):
                self.packed[:used].copy_(self.host_packed[:used], non_blocking=True)
                self._run(("encode", bucket))
            main.wait_stream(self.side_stream)
        else:
            self.packed[:used].copy_(self.host_packed[:used], non_blocking=True)
            if bucket:
                self._run(("encode", bucket))
        self._run(("logits",))

    def _prefill_inputs(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        config = self.tokenizer.config
        states = []
        for row in rows:
            state = CodecState(config)
            state.feed_codes(np.asarray(row, dtype=np.int64))
            states.append(state)
        self.prompt_states = states  # CodecBatch steps copies of them
        self.batch = CodecBatch(states)
        entries = max(s.installed for s in states)
        codebook = np.zeros((len(rows), entries, self.width), dtype=np.int64)
        lengths = np.ones((len(rows), entries), dtype=np.int64)  # padding entries: length 1, never read
        for i, state in enumerate(states):
            table, size = state.phrases()
            codebook[i, : len(size)] = table
            lengths[i, : len(size)] = size
        ids, mask = self._left_pad(rows)
        if self.compressed:
            spans = mask
        else:
            hyper = ids >= self.vocab
            slots = np.where(hyper, ids - self.vocab, 0)
            padded = np.concatenate([lengths, np.ones((len(rows), 1), np.int64)], 1)
            spans = np.where(hyper, np.take_along_axis(padded, slots, 1), 1) * mask
        positions = np.maximum((spans.cumsum(1) - 1) * mask, 0)
        installed = np.array([s.installed for s in states], dtype=np.int64)
        return {
            "ids": torch.from_numpy(ids),
            "mask": torch.from_numpy(mask),
            "positions": torch.from_numpy(positions),
            "codebook": torch.from_numpy(codebook),
            "lengths": torch.from_numpy(lengths),
            "installed": torch.from_numpy(installed),
        }

    def _prefill_body(self, inputs: dict[str, torch.Tensor]) -> None:
        model, hyper = self.model, self.model.hyper
        codebook, lengths = inputs["codebook"], inputs["lengths"]
        batch, entries, width = codebook.shape
        side = self.side_stream if self.use_graphs else None
        main = torch.cuda.current_stream(self.device) if side is not None else None
        if entries:
            # Every entry slot of the batch, padding included (a static shape): padding rows land
            # in slots no code reads and no logit offers.
            phrases, phrase_lengths = codebook.view(-1, width), lengths.view(-1)
            self.entry_lengths[:, :entries] = lengths
            if self.keep_phrases:
                self.entry_phrases[:, :entries] = codebook
            if side is not None and main is not None:
                # Output rows are needed only by the logits: encode them beside the decoder.
                side.wait_stream(main)
                with torch.cuda.stream(side):
                    rows_out = hyper.encode_phrases(RowTable(self.head), phrases, phrase_lengths, hyper.output_encoder)
                    self.output_rows[:, :entries] = rows_out.view(batch, entries, -1).to(self.dtype)
                    self._prefill_tables(rows_out, phrases[:, 0], batch, entries)
            else:
                rows_out = hyper.encode_phrases(RowTable(self.head), phrases, phrase_lengths, hyper.output_encoder)
                self.output_rows[:, :entries] = rows_out.view(batch, entries, -1).to(self.dtype)
                self._prefill_tables(rows_out, phrases[:, 0], batch, entries)
            rows_in = hyper.encode_phrases(model._input_lookup(), phrases, phrase_lengths, hyper.input_encoder)
            self.input_rows[:, :entries] = rows_in.view(batch, entries, -1).to(self.dtype)
        ids, positions = inputs["ids"], inputs["positions"]
        embeds = hyper.input_embeddings(ids, self.embedding, self.input_rows)
        hidden = self._decode(embeds, positions, self._prefill_bias(inputs["mask"]))
        if entries and side is not None and main is not None:
            main.wait_stream(side)
        logits = hyper.logits(
            hidden[:, -1:],
            self.head,
            self.output_rows[:, : self.slots],
            inputs["installed"][:, None],
            self.softcap,
            self._first_ids(),
            self._tables(),
        )
        self.next_codes.copy_(self._pick(self._restrict(logits[:, -1])))
        self.codes_in.copy_(self.next_codes)
        self.positions.copy_(positions[:, -1])
        self.cursor.fill_(ids.shape[1])

    def _texts(self, tokens: list[list[int]]) -> list[str]:
        return [str(self.tokenizer.decode(t, state=s)) for t, s in zip(tokens, self.prompt_states)]
