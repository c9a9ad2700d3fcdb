# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls, allow-subclassing-any
"""transformers' ``generate()`` over codes: the hooks `Zip2ZipForCausalLM` gives `GenerationMixin`.

Generation keeps one Rust `CodecState` per row (in the generation kwargs, never in the module):
each step reads the new code into its row's state, encodes only the entries that step created,
and writes their rows into per-row buffers that grow with the entries (doubling, capped at K).
The options zip2zip adds to ``generate()`` (``stop_strings`` and ``max_new_base_tokens`` on
the text, ``output_hypertokens``) are turned into transformers' stopping criteria and logits
processors from `zip2zip.generation.streaming`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache, GenerationMixin, LogitsProcessorList, StoppingCriteriaList

from zip2zip._compat import cache_kwargs, causal_lm_output, output_cache, pick_cache, pop_cache
from zip2zip._core import CodebookConfig, CodecBatch, CodecState
from zip2zip._generated import remember
from zip2zip.errors import ModelInputError
from zip2zip.generation.fields import codebook_fields, first_real_positions
from zip2zip.generation.streaming import (
    BaseIdsOnly,
    CodeTextStopping,
    MarginalFirstToken,
    RecordingStreamer,
    SuffixDecoder,
)
from zip2zip.modeling.marginal import marginal_default, min_share_default
from zip2zip.modeling.outputs import Zip2ZipCausalLMOutput
from zip2zip.nn import RowTable


@contextmanager
def bound_streamer(kwargs: dict[str, Any], mask: torch.Tensor | None) -> Iterator[None]:
    """transformers' own streamers (``TextStreamer``, ``TextIteratorStreamer``) with a
    `Zip2ZipTokenizer`: for the call, their tokenizer is one that decodes the suffixes they ask
    for with the codebook state at the suffix's start (`SuffixDecoder`)."""
    from transformers import TextStreamer

    from zip2zip.tokenizer import Zip2ZipTokenizer

    streamer: Any = kwargs.get("streamer")
    tokenizer = getattr(streamer, "tokenizer", None)
    if not isinstance(streamer, TextStreamer) or not isinstance(tokenizer, Zip2ZipTokenizer):
        yield
        return
    decoder = SuffixDecoder(tokenizer, mask)
    kwargs["streamer"] = RecordingStreamer(streamer, decoder)
    bound: Any = streamer  # its tokenizer attribute is typed for transformers' tokenizers
    bound.tokenizer = decoder
    try:
        yield
    finally:
        bound.tokenizer = tokenizer


@dataclass
class GenerationState:
    """Per-row codebook state of one `generate()` call, filled at the prompt's forward."""

    started: bool = False
    codecs: CodecBatch | None = None
    input_rows: torch.Tensor | None = None
    output_rows: torch.Tensor | None = None
    installed: torch.Tensor | None = None
    last_position: torch.Tensor | None = None
    # ``canonical_outputs`` and ``marginal_first_token``: the entries' phrases on the device, for
    # the canonical mask and the marginal's first tokens.
    canonical: bool = False
    marginal: bool = False
    codebook: torch.Tensor | None = None
    codebook_lengths: torch.Tensor | None = None


class Zip2ZipGenerationMixin(GenerationMixin):
    """``generate()``, ``prepare_inputs_for_generation`` and the per-step forward of a zip2zip
    model (`Zip2ZipForCausalLM` provides ``config``, ``base``, ``hyper`` and the row lookups)."""

    config: Any
    base: Any
    hyper: Any
    _mask_non_canonical: Any
    _first_ids: Any

    def _input_lookup(self) -> Any:
        """Where entries' input rows come from: the embedding module (so its scaling applies),
        or its table for the "mean" encoder, which pools straight from it with hyper_gather."""
        embedding = self.base.get_input_embeddings()
        return RowTable.of_embedding(embedding) if self.config.encoder_type == "mean" else embedding

    def _softcap(self) -> float | None:
        return getattr(self.base.config.get_text_config(), "final_logit_softcapping", None)

    def codebook_config(self) -> CodebookConfig:
        """The codec configuration the model reads codes with."""
        config = self.config
        return CodebookConfig(config.vocab_size, config.max_codebook_size, config.max_subtokens, config.disabled_ids)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``GenerationMixin.generate`` over codes: pass what the tokenizer returns
        (``input_ids``, ``attention_mask``, ``codebook``, ``codebook_lengths``, ``installed``),
        left-padded, as keywords. Returns codes; decode the new ones with the state after the
        prompt. ``max_new_tokens`` counts codes; ``max_new_base_tokens`` (with ``tokenizer=``)
        also limits base tokens, and ``stop_strings`` (with ``tokenizer=``) are matched on the
        generated text. For printing as it goes, ``streamer=zip2zip.generation.Zip2ZipStreamer(tok)``.
        ``output_hypertokens=False`` restricts the generated codes to base ids (the prompt still
        reads hypertokens, so its prefill and KV-cache savings stay): a safety valve that trades
        generation compression for the base model's output vocabulary.
        ``marginal_first_token=True`` keeps, at each step, only the codes that start with the
        most likely next base token under the marginal (its base id's probability plus its
        hypertokens'): the text goes where the marginal says, the code only decides how much of
        it to write (`zip2zip.modeling.marginal`). Its default is ``config.marginal_first_token``,
        and when that is None (as it is unless set), on for the valve, which then writes that
        token, and off otherwise; ``marginal_first_token=False`` gives the valve the base ids'
        own probabilities. ``hypertoken_min_share=s`` (default ``config.hypertoken_min_share``, 0)
        turns the marginal on and writes a hypertoken only when it holds at least the share ``s``
        of its first token's probability: between hypertoken output (0) and the valve (1).
        ``prompt_lookup_num_tokens=N`` (greedy only) runs hypertoken speculation instead of
        transformers' loop: N draft codes a pass, guessed by looking up the text's last base-token
        n-gram (``max_matching_ngram_size``, default 3) earlier in the text, and verified in one
        pass; the same codes as plain greedy decoding (`zip2zip.generation.speculative`). With
        ``output_hypertokens=False``, ``draft_source="hypertokens"`` (or ``"both"``) drafts the
        rest of the phrase of the hypertoken the model ranks first among those starting with the
        base id written: the valve's output in fewer passes. ``canonical_inputs=True`` (greedy or
        sampled) has the model read, at every step, the canonical encoding of the text so far, as
        in training, whatever codes it wrote: a code that extends the one before it rewrites that
        position instead of following it (`zip2zip.generation.canonical_inputs`); with
        ``read_output_as="base_ids"`` each written code is read back as its base ids instead (a
        probe: the answer read as the valve reads its own).

        Raises:
            ModelInputError: beam search (per-row codebook states are not reordered yet), or a
                right-padded batch.
        """
        if any(
            kwargs.get(key) not in (None, False)
            for key in ("prompt_lookup_num_tokens", "canonical_inputs", "read_output_as")
        ):
            return self._generate_greedy_loop(args, kwargs)
        kwargs.pop("canonical_inputs", None)
        kwargs.pop("read_output_as", None)
        if kwargs.pop("draft_source", None) not in (None, "lookup"):
            raise ModelInputError("draft_source chooses the drafts of speculation: it needs prompt_lookup_num_tokens=N")
        output_hypertokens = bool(kwargs.pop("output_hypertokens", True))
        share = min_share_default(self.config, kwargs.pop("hypertoken_min_share", None))
        marginal = marginal_default(self.config, kwargs.pop("marginal_first_token", None), output_hypertokens, share)
        # The canonical mask is for codes of canonical streams: a stream of base ids only is not one.
        state = GenerationState(canonical=bool(self.config.canonical_outputs) and output_hypertokens, marginal=marginal)
        processors = list(kwargs.get("logits_processor") or [])
        if marginal:  # before the valve: the marginal counts the hypertokens' probability
            processors.append(MarginalFirstToken(self.config.vocab_size, state, share))
        if not output_hypertokens:
            processors.append(BaseIdsOnly(self.config.vocab_size))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        generation_config = kwargs.get("generation_config") or self.generation_config
        if (kwargs.get("num_beams") or generation_config.num_beams or 1) > 1:
            raise ModelInputError("beam search is not supported: per-row codebook states would need reordering")
        stop_strings = kwargs.pop("stop_strings", None)
        max_new_base_tokens = kwargs.pop("max_new_base_tokens", None)
        tokenizer = kwargs.pop("tokenizer", None)
        if stop_strings or max_new_base_tokens is not None:
            if tokenizer is None:
                raise ModelInputError("stop_strings and max_new_base_tokens need tokenizer= (the Zip2ZipTokenizer)")
            repeats = kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1
            prompts = kwargs["input_ids"].repeat_interleave(repeats, dim=0)
            mask = kwargs.get("attention_mask")
            mask = None if mask is None else mask.repeat_interleave(repeats, dim=0)
            criteria = CodeTextStopping(
                tokenizer,
                prompts,
                mask,
                stop_strings=[stop_strings] if isinstance(stop_strings, str) else list(stop_strings or ()),
                max_new_base_tokens=max_new_base_tokens,
            )
            kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or []), criteria])
        if args:  # generate(input_ids, ...) as transformers allows: the codes are input_ids
            kwargs["input_ids"], args = args[0], args[1:]
        input_ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if input_ids is not None and kwargs.get("codebook") is None:
            # Codes alone (as pipeline() passes them): the codebook fields are read from the codes.
            kwargs.update(codebook_fields(self.codebook_config(), input_ids, mask))
        kwargs["zip2zip_state"] = state
        # The caller's cache under either name, handed on under the installed release's name.
        cache = pop_cache(kwargs)
        kwargs.update(cache_kwargs(DynamicCache(config=self.base.config) if cache is None else cache))
        with bound_streamer(kwargs, mask):
            output = super().generate(*args, **kwargs)  # type: ignore[misc, unused-ignore]  # misc: transformers < 5.24 types self
        sequences = output if isinstance(output, torch.Tensor) else getattr(output, "sequences", None)
        if sequences is not None and input_ids is not None:
            # decode() of a row's generated part without a state (pipeline's
            # sequence[prompt_length:]) reads it after the row's prompt (zip2zip._generated).
            starts = [0] * len(sequences) if mask is None else first_real_positions(mask, len(sequences))
            remember(self.codebook_config(), sequences.cpu().numpy(), input_ids.shape[1], starts)
        return output

    def _generate_greedy_loop(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``generate(prompt_lookup_num_tokens=N)`` or ``generate(canonical_inputs=True)``:
        `speculative_generate` or `canonical_inputs_generate` with the options ``generate()``
        takes; anything they cannot honour is refused by name."""
        from zip2zip.generation.canonical_inputs import canonical_inputs_generate
        from zip2zip.generation.speculative import speculative_generate

        options = dict(kwargs)
        canonical_inputs = bool(options.pop("canonical_inputs", False))
        read_output_as = options.pop("read_output_as", None)
        read_as = str(read_output_as or "codes")
        if read_output_as is not None and not canonical_inputs:
            raise ModelInputError("read_output_as is an option of canonical_inputs=True")
        draft = options.pop("prompt_lookup_num_tokens", None)
        name = "canonical_inputs" if canonical_inputs else "prompt_lookup_num_tokens"
        if canonical_inputs and draft is not None:
            raise ModelInputError("canonical_inputs does not combine with prompt_lookup_num_tokens")
        input_ids = args[0] if args else options.pop("input_ids", None)
        if input_ids is None:
            raise ModelInputError(f"{name} needs the prompt's codes (input_ids)")
        generation_config = options.pop("generation_config", None) or self.generation_config
        mask = options.pop("attention_mask", None)
        for ignored in ("codebook", "codebook_lengths", "installed", "use_cache", "tokenizer"):
            options.pop(ignored, None)  # the codebook is read from the codes themselves
        setting = {
            name: options.pop(name, getattr(generation_config, name, None))
            for name in (
                "max_new_tokens",
                "max_length",
                "eos_token_id",
                "pad_token_id",
                "do_sample",
                "num_beams",
                "num_return_sequences",
                "max_matching_ngram_size",
                "return_dict_in_generate",
            )
        }
        base_budget = options.pop("max_new_base_tokens", None)
        output_hypertokens = bool(options.pop("output_hypertokens", True))
        max_draft_phrase = options.pop("max_draft_phrase", None)
        draft_source = str(options.pop("draft_source", None) or "lookup")
        sampling = None
        if canonical_inputs:  # greedy or sampled: the sampling settings are its own
            from zip2zip.generation.sampling import SamplingConfig

            drawn = {
                key: options.pop(key, getattr(generation_config, key, None))
                for key in ("temperature", "top_k", "top_p")
            }
            if setting["do_sample"]:
                sampling = SamplingConfig(
                    True, float(drawn["temperature"] or 1.0), drawn["top_k"] or None, drawn["top_p"]
                )
        elif setting["do_sample"]:
            raise ModelInputError(f"{name} runs greedy decoding only: do_sample is not supported with it")
        if (setting["num_beams"] or 1) > 1 or (setting["num_return_sequences"] or 1) > 1:
            raise ModelInputError(f"{name} does not support num_beams > 1 or num_return_sequences > 1")
        share = min_share_default(self.config, options.pop("hypertoken_min_share", None))
        marginal = marginal_default(self.config, options.pop("marginal_first_token", None), output_hypertokens, share)
        unsupported = sorted(key for key, value in options.items() if value is not None and value is not False)
        if canonical_inputs and (max_draft_phrase is not None or draft_source != "lookup"):
            unsupported.append("max_draft_phrase" if max_draft_phrase is not None else "draft_source")
        if unsupported:
            raise ModelInputError(f"{name} does not support {', '.join(unsupported)}")
        max_new = setting["max_new_tokens"]
        if max_new is None:
            max_new = max(int(setting["max_length"] or 20) - input_ids.shape[1], 1)
        output: Any
        if canonical_inputs:
            output = canonical_inputs_generate(
                self,
                input_ids,
                mask,
                max_new_tokens=int(max_new),
                eos_token_id=setting["eos_token_id"],
                pad_token_id=setting["pad_token_id"],
                max_new_base_tokens=base_budget,
                output_hypertokens=output_hypertokens,
                marginal_first_token=marginal,
                hypertoken_min_share=share,
                sampling=sampling,
                read_as=read_as,
            )
        else:
            output = speculative_generate(
                self,
                input_ids,
                mask,
                max_new_tokens=int(max_new),
                num_draft_codes=int(draft),
                max_ngram=int(setting["max_matching_ngram_size"] or 3),
                eos_token_id=setting["eos_token_id"],
                pad_token_id=setting["pad_token_id"],
                max_new_base_tokens=base_budget,
                output_hypertokens=output_hypertokens,
                max_draft_phrase=None if max_draft_phrase is None else int(max_draft_phrase),
                draft_source=draft_source,
                marginal_first_token=marginal,
                hypertoken_min_share=share,
            )
        starts = [0] * len(output.sequences) if mask is None else first_real_positions(mask, len(output.sequences))
        remember(self.codebook_config(), output.sequences.cpu().numpy(), input_ids.shape[1], starts)
        if setting["return_dict_in_generate"]:
            from transformers.generation.utils import GenerateDecoderOnlyOutput

            return GenerateDecoderOnlyOutput(sequences=output.sequences)
        return output.sequences

    # The cache's name and place differ between transformers releases (zip2zip._compat), so the
    # signature cannot match both releases' for the type checker.
    def prepare_inputs_for_generation(  # type: ignore[override, unused-ignore]
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: Any = None,
        past_key_values: Any = None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The new codes (everything not in the cache yet) and the codebook fields. ``generate()``
        passes the cache as ``cache`` (transformers 5.24 on) or ``past_key_values`` (before)."""
        if inputs_embeds is not None:
            raise ModelInputError("zip2zip generates from codes (input_ids), not inputs_embeds")
        cache = pick_cache(cache, past_key_values)
        cached = cache.get_seq_length() if cache is not None else 0
        return {
            "input_ids": input_ids[:, cached:],
            "attention_mask": attention_mask,
            **cache_kwargs(cache),
            "use_cache": True,
            "codebook": kwargs.get("codebook"),
            "codebook_lengths": kwargs.get("codebook_lengths"),
            "installed": kwargs.get("installed"),
            "zip2zip_state": kwargs.get("zip2zip_state"),
            "logits_to_keep": kwargs.get("logits_to_keep") or 0,
        }

    def _start_generation(
        self,
        state: GenerationState,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        input_rows: torch.Tensor,
        output_rows: torch.Tensor,
        position_ids: torch.Tensor,
        codebook: torch.Tensor | None = None,
        codebook_lengths: torch.Tensor | None = None,
    ) -> None:
        """After the prompt's forward: one tracking state per row, row buffers of K slots."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if not bool(mask[:, -1].all()):
            raise ModelInputError("generate() needs left padding: the last position of every row must be real")
        codec = self.codebook_config()
        trackers = []
        for row in range(input_ids.shape[0]):
            tracker = CodecState(codec)
            tracker.feed_codes(input_ids[row][mask[row].bool()].cpu().numpy())
            trackers.append(tracker)
        state.codecs = CodecBatch(trackers)
        # Row buffers hold the entries that exist and grow (doubling, capped at K) as
        # generation creates more: memory follows the codebook, not K.
        state.input_rows = input_rows.detach().clone()
        state.output_rows = output_rows.detach().clone()
        state.installed = torch.from_numpy(state.codecs.installed.astype("int64")).to(input_ids.device)
        state.last_position = position_ids[:, -1].clone()
        needs_phrases = state.canonical or state.marginal or self.hyper.conditional is not None
        if needs_phrases and codebook is not None and codebook_lengths is not None:
            state.codebook, state.codebook_lengths = codebook.clone(), codebook_lengths.clone()
        state.started = True

    def _grow_rows(self, state: GenerationState, needed: int) -> None:
        """Make the row buffers hold at least ``needed`` slots (doubling, capped at K)."""
        assert state.input_rows is not None and state.output_rows is not None
        current = state.input_rows.shape[1]
        if needed <= current:
            return
        size = min(max(needed, 2 * current, 16), self.config.max_codebook_size)
        batch = state.input_rows.shape[0]
        state.input_rows = torch.cat(
            [state.input_rows, state.input_rows.new_zeros(batch, size - current, state.input_rows.shape[2])], dim=1
        )
        state.output_rows = torch.cat(
            [state.output_rows, state.output_rows.new_zeros(batch, size - current, state.output_rows.shape[2])], dim=1
        )
        codebook = getattr(state, "codebook", None)  # speculation's row buffers have no phrases
        if codebook is not None and state.codebook_lengths is not None:
            grown = codebook.shape[1]
            state.codebook = torch.cat([codebook, codebook.new_zeros(batch, size - grown, codebook.shape[2])], dim=1)
            state.codebook_lengths = torch.cat(
                [state.codebook_lengths, state.codebook_lengths.new_zeros(batch, size - grown)], dim=1
            )

    def _decode_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: Any,
        state: GenerationState,
        **kwargs: Any,
    ) -> Zip2ZipCausalLMOutput:
        """One generation step: read each row's new code, encode the entries it creates, run
        the base model on one position per row. (A sampled code is never a KwKwK code, whose
        entry its own reading creates: that slot is not offered yet, so the code's row exists.)"""
        assert state.input_rows is not None and state.output_rows is not None
        assert state.installed is not None and state.last_position is not None
        codes = input_ids[:, -1]
        embedding = self.base.get_input_embeddings()
        head = self.base.get_output_embeddings().weight
        inputs_embeds = self.hyper.input_embeddings(codes[:, None], embedding, state.input_rows)
        # One Rust call steps every row's codebook: phrase lengths, installed counts and the
        # entries this step created (usually one per row, or none).
        assert state.codecs is not None
        lengths, installed, rows, slots, phrases, phrase_lengths = state.codecs.step(codes.cpu().numpy())
        steps = lengths if self.config.position_mode == "base" else lengths * 0 + 1
        # Everything the step sends to the device in one copy (a copy from pageable memory
        # waits for the device to finish what is queued; one from pinned memory does not).
        batch, new = len(codes), len(rows)
        packed = torch.from_numpy(
            np.concatenate([installed, steps, rows, slots, phrase_lengths, phrases.reshape(-1)]).astype(np.int64)
        )
        if codes.device.type == "cuda":
            packed = packed.pin_memory()
        packed = packed.to(codes.device, non_blocking=True)
        state.installed, advance = packed[:batch], packed[batch : 2 * batch]
        if new:
            index_rows, index_slots, phrase_len = packed[2 * batch :].narrow(0, 0, 3 * new).view(3, new)
            phrase_table = packed[2 * batch + 3 * new :].view(new, -1)
            rows_in = self.hyper.encode_phrases(
                self._input_lookup(), phrase_table, phrase_len, self.hyper.input_encoder
            )
            rows_out = self.hyper.encode_phrases(RowTable(head), phrase_table, phrase_len, self.hyper.output_encoder)
            self._grow_rows(state, int(slots.max()) + 1)
            state.input_rows[index_rows, index_slots] = rows_in.to(state.input_rows.dtype)
            state.output_rows[index_rows, index_slots] = rows_out.to(state.output_rows.dtype)
            if state.codebook is not None and state.codebook_lengths is not None:
                width = min(phrase_table.shape[1], state.codebook.shape[2])
                state.codebook[index_rows, index_slots, :width] = phrase_table[:, :width]
                state.codebook_lengths[index_rows, index_slots] = phrase_len
        state.last_position = state.last_position + advance
        outputs = self.base.get_decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=state.last_position[:, None],
            use_cache=True,
            **cache_kwargs(cache),
        )
        first_ids = None if state.codebook is None else self._first_ids(state.codebook)
        logits = self.hyper.logits(
            outputs.last_hidden_state, head, state.output_rows, state.installed[:, None], self._softcap(), first_ids
        )
        if state.canonical and state.codebook is not None and state.codebook_lengths is not None:
            self._mask_non_canonical(
                logits, codes[:, None], state.codebook, state.codebook_lengths, state.installed[:, None]
            )
        return causal_lm_output(output_cache(outputs), output_class=Zip2ZipCausalLMOutput, logits=logits)
