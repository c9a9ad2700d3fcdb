"""A multi-turn chat with a zip2zip model that keeps its codes: each turn's prompt is the codes of
every earlier turn, as they were read and generated, followed by the new text encoded from the
codebook state they left. Earlier turns are never encoded again, so their hypertokens (those of
the answers too) keep their slots, and the new text can use every phrase the conversation made.

Used by ``zip2zip chat`` and ``zip2zip generate`` (`zip2zip.cli.chat`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from zip2zip._core import CodecState, TextStream
from zip2zip.errors import ModelInputError
from zip2zip.tokenizer import Zip2ZipTokenizer


@dataclass
class Turn:
    """One answer and its figures.

    Attributes:
        text: the answer's text (special tokens removed).
        prompt_codes: the codes the model read for this turn (earlier turns included).
        new_prompt_codes: how many of them this turn added (the rest came from earlier turns).
        codes: the generated codes.
        base_tokens: the base tokens they stand for.
        seconds: wall time of the generation.
    """

    text: str
    prompt_codes: list[int]
    new_prompt_codes: int
    codes: list[int]
    base_tokens: int
    seconds: float

    @property
    def compression(self) -> float:
        """Base tokens per generated code."""
        return self.base_tokens / max(len(self.codes), 1)

    @property
    def tokens_per_second(self) -> float:
        """Base tokens generated per second."""
        return self.base_tokens / max(self.seconds, 1e-9)

    def figures(self) -> str:
        """The line ``zip2zip chat`` prints after an answer."""
        return (
            f"[{len(self.codes)} codes, {self.base_tokens} base tokens, {self.compression:.2f} base tokens per code, "
            f"{self.tokens_per_second:.1f} base tokens/s; prompt {len(self.prompt_codes)} codes, "
            f"{self.new_prompt_codes} new]"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "codes": len(self.codes),
            "base_tokens": self.base_tokens,
            "base_tokens_per_code": self.compression,
            "prompt_codes": len(self.prompt_codes),
            "new_prompt_codes": self.new_prompt_codes,
            "seconds": self.seconds,
        }


@dataclass
class ChatSession:
    """A conversation with ``model``: ``ask(text)`` answers and remembers.

    Args:
        model: a `Zip2ZipForCausalLM` (eval mode).
        tokenizer: its `Zip2ZipTokenizer` (with a chat template).
        max_new_tokens: codes per answer at most.
        generate_kwargs: more keywords for ``model.generate`` (sampling settings...).
    """

    model: Any
    tokenizer: Zip2ZipTokenizer
    max_new_tokens: int = 256
    generate_kwargs: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    _text: str = ""  # the text of self.codes, special tokens kept

    def reset(self) -> None:
        """Forget the conversation."""
        self.messages, self.codes, self._text = [], [], ""

    def _prompt_codes(self) -> tuple[list[int], int]:
        """The next prompt: the codes so far plus the new text, encoded from their state."""
        rendered = self.tokenizer.apply_chat_template(self.messages, tokenize=False, add_generation_prompt=True)
        if not isinstance(rendered, str):
            raise ModelInputError("the chat template did not render to text")
        if self.codes and rendered.startswith(self._text):
            new_text, state = rendered[len(self._text) :], self.tokenizer.state_after(self.codes)
            kept = list(self.codes)
        else:  # the first turn, or a template that rewrites earlier turns: encode it all
            new_text, state, kept = rendered, CodecState(self.tokenizer.config), []
        ids = self.tokenizer.base(new_text, add_special_tokens=False)["input_ids"]
        new_codes = [int(c) for c in state.feed_ids(np.asarray(ids, dtype=np.int64))]
        new_codes += [int(c) for c in state.finish()]
        return kept + new_codes, len(new_codes)

    def ask(self, text: str, on_piece: Callable[[str, bool], None] | None = None) -> Turn:
        """Answer ``text`` (a user turn); ``on_piece(text, is_hypertoken)`` receives the answer
        code by code as it is written.

        Raises:
            InvalidCodeError: the model wrote a code its codebook does not know (a bug).
        """
        self.messages.append({"role": "user", "content": text})
        prompt, added = self._prompt_codes()
        turn = self._generate(prompt, added, on_piece)
        self.messages.append({"role": "assistant", "content": turn.text})
        return turn

    def complete(self, text: str, on_piece: Callable[[str, bool], None] | None = None) -> Turn:
        """Continue ``text`` as it is (no chat template), in a new conversation."""
        self.reset()
        prompt = self.tokenizer.encode(text)
        return self._generate(prompt, len(prompt), on_piece)

    def _generate(self, prompt: list[int], added: int, on_piece: Callable[[str, bool], None] | None) -> Turn:
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([prompt], dtype=torch.long, device=device)
        config = self.model.generation_config
        pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        started = time.perf_counter()
        with torch.no_grad():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=self.max_new_tokens,
                streamer=PieceStreamer(self.tokenizer, on_piece) if on_piece is not None else None,
                pad_token_id=pad,
                **{"do_sample": False, **self.generate_kwargs},
            )
        seconds = time.perf_counter() - started
        generated = [int(c) for c in output[0, len(prompt) :].tolist()]
        state = self.tokenizer.state_after(prompt)
        answer = self.tokenizer.decode(generated, state=state, skip_special_tokens=True)
        self.codes = prompt + generated
        self._text = self.tokenizer.decode(self.codes)
        base_tokens = len(self.tokenizer.expand(generated, state))
        return Turn(answer, prompt, added, generated, base_tokens, seconds)


class PieceStreamer(BaseStreamer):
    """Hands each generated code's text to ``on_piece(text, is_hypertoken)`` (batch size 1;
    special tokens give no text; a code ending inside a UTF-8 character gives it with the next)."""

    def __init__(self, tokenizer: Zip2ZipTokenizer, on_piece: Callable[[str, bool], None]) -> None:
        self.tokenizer, self.on_piece = tokenizer, on_piece
        self._stream: TextStream | None = None

    def put(self, value: torch.Tensor) -> None:
        codes = [int(c) for c in value.reshape(-1).tolist()]
        if self._stream is None:  # the prompt
            self._stream = self.tokenizer.stream(self.tokenizer.state_after(codes), skip_special_tokens=True)
            return
        for code in codes:
            piece = self._stream.step([code])
            if piece:
                self.on_piece(piece, code >= self.tokenizer.vocab_size)

    def end(self) -> None:
        rest = self._stream.flush() if self._stream is not None else ""
        if rest:
            self.on_piece(rest, False)
        self._stream = None
