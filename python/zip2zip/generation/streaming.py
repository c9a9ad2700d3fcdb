"""Generation helpers that work in code space: a streamer that prints text as codes arrive and
a stopping criterion for stop strings and a budget of base tokens.

transformers' own `TextStreamer` and ``stop_strings`` decode ids with the base tokenizer's
vocabulary, which knows nothing of hypertokens; these read codes with the codebook state of the
prompt instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from zip2zip._core import TextStream
from zip2zip.errors import ModelInputError

if TYPE_CHECKING:  # annotations only: the tokenizer imports the model side to register it
    from zip2zip.tokenizer import Zip2ZipTokenizer


def _print_text(text: str, stream_end: bool) -> None:
    print(text, end="\n" if stream_end else "", flush=True)


class Zip2ZipStreamer(BaseStreamer):
    """Prints the text of generated codes as soon as whole characters are known.

    Pass it as ``model.generate(..., streamer=Zip2ZipStreamer(tokenizer))`` (batch size 1, as
    transformers' streamers). The text it prints joins to
    ``tokenizer.decode(new_codes, state=tokenizer.state_after(prompt_codes))``.

    Args:
        tokenizer: the `Zip2ZipTokenizer` of the model.
        skip_prompt: do not print the prompt (default True).
        skip_special_tokens: as the base tokenizer's decode.
        on_text: called with each piece of text and whether the stream ended (default: print).
    """

    def __init__(
        self,
        tokenizer: Zip2ZipTokenizer,
        *,
        skip_prompt: bool = True,
        skip_special_tokens: bool = False,
        on_text: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.skip_special_tokens = skip_special_tokens
        self.on_text = on_text or _print_text
        self.text = ""
        self._stream: TextStream | None = None

    def put(self, value: torch.Tensor) -> None:
        """Receive the prompt (first call) or the codes of one step.

        Raises:
            ModelInputError: more than one sequence.
        """
        if value.ndim > 1 and value.shape[0] > 1:
            raise ModelInputError("Zip2ZipStreamer streams one sequence: generate with batch size 1")
        codes = [int(c) for c in value.reshape(-1).tolist()]
        if self._stream is None:
            state = self.tokenizer.state_after(codes)
            self._stream = self.tokenizer.stream(state, skip_special_tokens=self.skip_special_tokens)
            if not self.skip_prompt:
                self.on_text(self.tokenizer.decode(codes, skip_special_tokens=self.skip_special_tokens), False)
            return
        text = self._stream.step(codes)
        if text:
            self.text += text
            self.on_text(text, False)

    def end(self) -> None:
        """Flush the held-back text and reset for the next generation."""
        rest = self._stream.flush() if self._stream is not None else ""
        self.text += rest
        self.on_text(rest, True)
        self._stream = None


class SuffixDecoder:
    """A `Zip2ZipTokenizer` for transformers' streamers, bound to one ``generate()`` call.

    ``TextStreamer`` decodes the codes it holds (all of them, or, after a line ends, those from
    the line's last code on) with ``tokenizer.decode(codes)``: a suffix of the sequence, which
    reads right only with the codebook state at its start. This one keeps the sequence
    (`RecordingStreamer` feeds it every ``put``) and decodes each suffix from that state; every
    other attribute is the tokenizer's.
    """

    def __init__(self, tokenizer: Zip2ZipTokenizer, attention_mask: torch.Tensor | None) -> None:
        self.tokenizer = tokenizer
        self.codes: list[int] = []
        self._mask = attention_mask
        self._known = 0  # codes read into self._state
        self._state = tokenizer.state_after([])

    def record(self, value: torch.Tensor) -> None:
        """Keep the codes of one ``put`` (the prompt's without its left padding)."""
        codes = value.reshape(-1)
        if not self.codes and self._mask is not None and value.ndim > 1 and self._mask.shape == value.shape:
            codes = codes[self._mask.reshape(-1).bool().to(codes.device)]
        self.codes.extend(int(c) for c in codes.tolist())

    def decode(self, codes: Any, **kwargs: Any) -> str:
        """``decode`` of a suffix of the recorded codes, from the state at its start.

        Raises:
            ModelInputError: the codes are not a suffix of what the streamer was given.
        """
        suffix = [int(codes)] if isinstance(codes, int) else [int(c) for c in codes]
        start = len(self.codes) - len(suffix)
        if start < 0 or self.codes[start:] != suffix:
            raise ModelInputError("the streamer decoded codes that are not the end of the generated sequence")
        if start < self._known:  # streamers only move forward; start again from empty if not
            self._known, self._state = 0, self.tokenizer.state_after([])
        self._state = self.tokenizer.state_after(self.codes[self._known : start], self._state)
        self._known = start
        return self.tokenizer.decode(suffix, state=self._state, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


class RecordingStreamer(BaseStreamer):
    """Hands each ``put`` to a `SuffixDecoder` before the wrapped streamer sees it."""

    def __init__(self, streamer: Any, decoder: SuffixDecoder) -> None:
        self.streamer = streamer
        self.decoder = decoder

    def put(self, value: torch.Tensor) -> None:
        self.decoder.record(value)
        self.streamer.put(value)

    def end(self) -> None:
        self.streamer.end()


class CodeTextStopping(StoppingCriteria):
    """Stops a row once its generated text contains a stop string, or once it has produced
    ``max_new_base_tokens`` base tokens. ``model.generate(stop_strings=..., max_new_base_tokens=...)``
    builds one; rows are those of the (expanded) batch.

    Args:
        tokenizer: the `Zip2ZipTokenizer` of the model.
        prompt_codes: ``[B, L]`` prompt codes (left-padded), one row per generated sequence.
        attention_mask: ``[B, L]`` their mask.
        stop_strings: strings that end a row's generation.
        max_new_base_tokens: a budget of base tokens per row.
    """

    def __init__(
        self,
        tokenizer: Zip2ZipTokenizer,
        prompt_codes: torch.Tensor,
        attention_mask: torch.Tensor | None,
        *,
        stop_strings: Sequence[str] = (),
        max_new_base_tokens: int | None = None,
    ) -> None:
        mask = torch.ones_like(prompt_codes) if attention_mask is None else attention_mask
        self.stop_strings = tuple(stop_strings)
        self.max_new_base_tokens = max_new_base_tokens
        states = [
            tokenizer.state_after(prompt_codes[row][mask[row].bool()].tolist()) for row in range(len(prompt_codes))
        ]
        self.streams = [tokenizer.stream(state) for state in states]
        self.trackers = states
        self.texts = [""] * len(states)
        self.base_tokens = [0] * len(states)
        self.seen = prompt_codes.shape[1]
        # A stop string can end inside text that arrived several steps ago: keep enough tail.
        self._tail = max((len(s) for s in self.stop_strings), default=0) + 16

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        new = input_ids[:, self.seen :].tolist()
        self.seen = input_ids.shape[1]
        done = []
        for row, codes in enumerate(new):
            for code in codes:
                ids, _created = self.trackers[row].feed_codes([code])
                self.base_tokens[row] += len(ids)
                self.texts[row] = (self.texts[row] + self.streams[row].step([code]))[-self._tail :]
            stop = any(s in self.texts[row] for s in self.stop_strings)
            over = self.max_new_base_tokens is not None and self.base_tokens[row] >= self.max_new_base_tokens
            done.append(stop or over)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class MarginalFirstToken(LogitsProcessor):
    """``generate(marginal_first_token=True)``: keeps only the codes that start with the most
    likely next base token under the marginal (`zip2zip.modeling.marginal`), reading each row's
    entries from the call's generation state (which keeps them on the device for it)."""

    def __init__(self, vocab_size: int, state: Any, min_share: float = 0.0) -> None:
        self.vocab_size = int(vocab_size)
        self.state = state
        self.min_share = float(min_share)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from zip2zip.modeling.marginal import first_ids, keep_marginal_first

        codebook, lengths = self.state.codebook, self.state.codebook_lengths
        if codebook is None or lengths is None:
            raise RuntimeError("marginal_first_token: the generation state holds no codebook")
        firsts = first_ids(codebook, lengths).to(scores.device)
        kept = keep_marginal_first(scores, firsts, self.vocab_size, self.min_share)
        return kept.to(scores.dtype)  # type: ignore[return-value]


class BaseIdsOnly(LogitsProcessor):
    """Masks every hypertoken slot (scores at ids ``vocab_size`` and above), so that generation
    writes base ids only: ``model.generate(..., output_hypertokens=False)`` adds it."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        masked = scores.clone()
        masked[:, self.vocab_size :] = -float("inf")
        return masked  # type: ignore[return-value]
