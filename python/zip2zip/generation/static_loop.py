# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls
"""The machinery of the static decoding loop (`zip2zip.generation.static`): its output, the
static KV cache and attention bias, CUDA graph capture and replay, and the loop that runs one
step ahead of the host. `StaticLoop` leaves the tensor work of a step to its subclasses.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import StaticCache

from zip2zip._compat import cache_kwargs
from zip2zip.errors import ModelInputError
from zip2zip.generation.sampling import SamplingConfig, sample_next


@dataclass
class GenerationOutput:
    """What one `StaticGenerator.generate` call produced and what it cost.

    Attributes:
        tokens: per row, the generated ids (base model) or codes (zip2zip), without the EOS.
        base_tokens: per row, how many base tokens the generated codes stand for.
        texts: per row, the generated text.
        prompt_positions: positions the (left-padded) prompt batch took in the KV cache.
        steps: decoding steps run (each step gives every row one id or code).
        prefill_seconds: from prompt ids on the host to the first generated ids on the host.
        decode_seconds: the decoding loop after that.
        kv_bytes_per_position: KV-cache bytes one position of the whole batch takes.
        greedy: per row, the model's greedy choice at each step (differs from ``tokens`` only
            where ``forced`` replaced it).
    """

    tokens: list[list[int]]
    base_tokens: list[int]
    texts: list[str]
    prompt_positions: int
    steps: int
    prefill_seconds: float
    decode_seconds: float
    kv_bytes_per_position: int
    greedy: list[list[int]] = field(default_factory=list)

    @property
    def text_bytes(self) -> int:
        """UTF-8 bytes of all generated texts."""
        return sum(len(t.encode("utf-8")) for t in self.texts)

    @property
    def kv_cache_bytes(self) -> int:
        """KV-cache bytes the prompt and the generated positions hold at the end."""
        return self.kv_bytes_per_position * (self.prompt_positions + self.steps)

    @property
    def seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def no_mha_fastpath() -> Iterator[None]:
    """Keep ``nn.TransformerEncoderLayer`` (the hyper-encoders) off its fused inference fast path
    here, so that eager runs and captured graphs run the same ops (the fast path's handling of
    padding masks was not checked under capture). Both paths compute the same function."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def stop_ids(model: Any, tokenizer: Any) -> int | list[int] | None:
    """What ends a row: the model's ``generation_config.eos_token_id`` (as ``generate()``), else
    the tokenizer's EOS."""
    config = getattr(model, "generation_config", None)
    ids = getattr(config, "eos_token_id", None) if config is not None else None
    if ids is None:
        ids = getattr(tokenizer, "eos_token_id", None)
    return ids if ids is None or isinstance(ids, int) else [int(i) for i in ids]


def buckets(limit: int) -> list[int]:
    """0, 1, 2, 4, ... and ``limit``: how many new entries a captured step encodes."""
    sizes = [0]
    size = 1
    while size < limit:
        sizes.append(size)
        size *= 2
    sizes.append(limit)
    return sorted(set(sizes))


class StaticLoop(abc.ABC):
    """Greedy or sampled generation for a fixed batch size and cache length; see the module
    docstring.

    Build a generator with `StaticGenerator.for_base` or `StaticGenerator.for_zip2zip`.

    Args:
        causal_lm: the base causal LM (for zip2zip: the wrapper's base, LoRA merged or not).
        batch_size: rows per call (prompts beyond it raise; fewer are padded with copies).
        max_cache_len: positions the cache holds: prompt positions, plus decoding steps, plus one
            (the loop runs a step ahead).
        eos_token_id: the id or ids that end a row (None: rows end only at the budget). The
            constructors take the model's ``generation_config.eos_token_id``, as ``generate()``
            does, else the tokenizer's.
        cuda_graphs: capture the step (default: on CUDA).
        prefill_graphs: also capture the prompt's forward pass, once per prompt shape (batch,
            positions, entries), and replay it: removes the host's launch overhead from prefill,
            at the cost of one capture per new shape.
        sampling: how each next id or code is picked (default: greedy); `SamplingConfig`.
            Fixed for the generator's life, since its steps are captured with it.

    Raises:
        ModelInputError: a model with sliding-window attention, or sizes below 1.
    """

    def __init__(
        self,
        causal_lm: Any,
        *,
        batch_size: int,
        max_cache_len: int,
        eos_token_id: int | Sequence[int] | None,
        cuda_graphs: bool | None = None,
        prefill_graphs: bool = False,
        sampling: SamplingConfig | None = None,
    ) -> None:
        if batch_size < 1 or max_cache_len < 2:
            raise ModelInputError(
                f"batch_size must be >= 1 and max_cache_len >= 2, got {batch_size} and {max_cache_len}"
            )
        text_config = causal_lm.config.get_text_config()
        layer_types = getattr(text_config, "layer_types", None) or []
        if (
            getattr(text_config, "sliding_window", None)
            and any("sliding" in str(t) for t in layer_types)
            or getattr(text_config, "use_sliding_window", False)
        ):
            raise ModelInputError("StaticGenerator does not support sliding-window attention")
        self.lm = causal_lm
        self.decoder = causal_lm.get_decoder()
        self.embedding = causal_lm.get_input_embeddings()
        self.head: torch.Tensor = causal_lm.get_output_embeddings().weight
        self.softcap: float | None = getattr(text_config, "final_logit_softcapping", None)
        self.device = self.head.device
        self.dtype = self.head.dtype
        self.batch_size = batch_size
        self.max_cache_len = max_cache_len
        ids = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.stop_ids = frozenset(int(i) for i in ids)
        self.pad_id = int(ids[0]) if ids else 0
        self.use_graphs = self.device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
        if self.use_graphs and self.device.type != "cuda":
            raise ModelInputError("cuda_graphs=True needs the model on a CUDA device")
        if prefill_graphs and not self.use_graphs:
            raise ModelInputError("prefill_graphs=True needs CUDA graphs")
        self.prefill_graphs = prefill_graphs
        self.sampling = sampling or SamplingConfig()
        self._prefills: dict[
            tuple[tuple[int, ...], ...], tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], dict[str, torch.Tensor]]
        ] = {}
        self.cache = StaticCache(config=causal_lm.config, max_cache_len=max_cache_len)
        self.min_bias = torch.finfo(self.dtype).min
        self.key_bias = torch.full((batch_size, max_cache_len), self.min_bias, dtype=self.dtype, device=self.device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=self.device)
        self.next_codes = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.codes_in = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        cuda = self.device.type == "cuda"
        # Two of each, used in turn: a read may still be in flight while the next is queued.
        self.host_next = [torch.zeros(batch_size, dtype=torch.long, pin_memory=cuda) for _ in range(2)]
        self.host_codes = [torch.zeros(batch_size, dtype=torch.long, pin_memory=cuda) for _ in range(2)]
        self.read_events = [torch.cuda.Event() for _ in range(2)] if cuda else []
        self.graphs: dict[Any, torch.cuda.CUDAGraph] = {}
        self.kv_bytes_per_position = 0

    # ------------------------------------------------------------------ shared tensor work

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B]`` next ids or codes from ``[B, N]`` logits: greedy, or drawn (`sample_next`)."""
        return sample_next(logits, self.sampling)

    def _decode(self, embeds: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = self.decoder(
            inputs_embeds=embeds,
            attention_mask=bias,
            position_ids=positions,
            use_cache=True,
            **cache_kwargs(self.cache),
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def _prefill_bias(self, mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, L, M]`` bias for a left-padded prompt: causal over real positions; a padding
        position sees only itself (so no row of the softmax is empty)."""
        length = mask.shape[1]
        self.key_bias[:, :length] = torch.where(mask.bool(), 0.0, self.min_bias).to(self.dtype)
        query = torch.arange(length, device=self.device)[:, None]
        key = torch.arange(self.max_cache_len, device=self.device)[None, :]
        visible = (key <= query)[None] & ((self.key_bias[:, None, :] == 0) | (key == query)[None])
        return torch.where(visible, 0.0, self.min_bias).to(self.dtype)[:, None]

    def _step_bias(self) -> torch.Tensor:
        self.key_bias.index_fill_(1, self.cursor, 0.0)
        return self.key_bias[:, None, None, :]

    def _reset(self) -> None:
        self.cache.reset()
        self.key_bias.fill_(self.min_bias)
        self.cursor.zero_()

    def _initialise(self) -> None:
        """Allocate the cache (one dummy position), measure it, capture the step graphs."""
        if self.kv_bytes_per_position:
            return
        self._reset()
        embeds = torch.zeros(self.batch_size, 1, self.head.shape[1], dtype=self.dtype, device=self.device)
        bias = torch.zeros(self.batch_size, 1, 1, self.max_cache_len, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            self._decode(embeds, torch.zeros(self.batch_size, 1, dtype=torch.long, device=self.device), bias)
        layers: Any = self.cache.layers
        total = sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))
        self.kv_bytes_per_position = total // self.max_cache_len
        self._reset()
        if self.use_graphs:
            self._capture()
        self._reset()

    def _capture(self) -> None:
        stream = torch.cuda.Stream(self.device)
        for key in self._graph_keys():
            # Graphs replayed side by side are captured on different streams: cuBLAS keeps a
            # workspace per stream, and a graph keeps using the one it was captured with.
            self.graphs[key] = self._capture_graph(
                lambda: self._body(key), self._safe_inputs, self._capture_stream(key) or stream
            )
        torch.cuda.synchronize(self.device)

    def _capture_graph(
        self, work: Callable[[], None], prepare: Callable[[], None], stream: torch.cuda.Stream
    ) -> torch.cuda.CUDAGraph:
        """Run ``work`` twice on ``stream`` (warm-up; ``prepare`` before each run), then capture
        it there."""
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), no_mha_fastpath(), torch.cuda.stream(stream):
            for _ in range(2):
                prepare()
                work()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        torch.cuda.synchronize(self.device)
        prepare()
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), no_mha_fastpath(), torch.cuda.graph(graph, stream=stream):
            work()
        return graph

    def _capture_stream(self, key: Any) -> torch.cuda.Stream | None:
        """The stream a variant is captured on (None: the common one)."""
        return None

    def _run(self, key: Any) -> None:
        if self.use_graphs:
            self.graphs[key].replay()
        else:
            with torch.no_grad(), no_mha_fastpath():
                self._body(key)

    def _queue_read(self, step: int) -> None:
        """Queue the copy of ``next_codes`` to the host (collected by :meth:`_collect`)."""
        buffer = self.host_next[step % 2]
        buffer.copy_(self.next_codes, non_blocking=True)
        if self.read_events:
            self.read_events[step % 2].record()

    def _collect(self, step: int) -> np.ndarray:
        if self.read_events:
            self.read_events[step % 2].synchronize()
        values: np.ndarray = self.host_next[step % 2].numpy().copy()
        return values

    def _feed(self, codes: np.ndarray, step: int) -> None:
        """Queue a copy of host ``codes`` into ``codes_in`` (forced codes)."""
        buffer = self.host_codes[step % 2]
        buffer.copy_(torch.from_numpy(codes))
        self.codes_in.copy_(buffer, non_blocking=True)

    # ------------------------------------------------------------------ what each model provides

    @abc.abstractmethod
    def _graph_keys(self) -> list[Any]:
        """The captured variants of the tensor work, one graph each."""

    def _safe_inputs(self) -> None:
        """Inputs every captured variant may run on (for the warm-up runs before capture)."""
        self.codes_in.zero_()

    @abc.abstractmethod
    def _body(self, key: Any) -> None:
        """The tensor work of variant ``key`` (capturable)."""

    @abc.abstractmethod
    def _prefill_inputs(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        """Host work of prefill: the prompt tensors (on the CPU) the tensor work reads."""

    @abc.abstractmethod
    def _prefill_body(self, inputs: dict[str, torch.Tensor]) -> None:
        """Tensor work of prefill (capturable): fill the cache; set ``next_codes``, ``codes_in``
        and ``positions``."""

    def _observe(self, codes: np.ndarray, kwkwk: bool) -> np.ndarray:
        """Take in every row's code for the next step (the previous step's choice, or a forced
        code); return how many base tokens each stands for."""
        return np.ones(len(codes), dtype=np.int64)

    @abc.abstractmethod
    def _queue_ahead(self, step: int, forced_codes: np.ndarray | None) -> bool:
        """Queue the work of step ``step`` that needs nothing from the host; return whether it
        was queued (False: the step must run in full after :meth:`_observe`)."""

    @abc.abstractmethod
    def _queue_rest(self, step: int, ahead: bool) -> None:
        """Queue the rest of step ``step``, after :meth:`_observe` of its input codes."""

    @abc.abstractmethod
    def _texts(self, tokens: list[list[int]]) -> list[str]:
        """The generated text of each row."""

    # ------------------------------------------------------------------ the loop

    def _check_prompts(
        self, prompts: Sequence[Sequence[int]], forced: Sequence[Sequence[int]] | None, max_new_base_tokens: int
    ) -> list[list[int]]:
        if not 1 <= len(prompts) <= self.batch_size:
            raise ModelInputError(f"this generator takes 1 to {self.batch_size} prompts, got {len(prompts)}")
        rows = [list(map(int, p)) for p in prompts]
        if any(not r for r in rows):
            raise ModelInputError("every prompt needs at least one id")
        if max_new_base_tokens < 1:
            raise ModelInputError(f"max_new_base_tokens must be at least 1, got {max_new_base_tokens}")
        if forced is not None and len(forced) != len(rows):
            raise ModelInputError(f"forced needs one stream per prompt: {len(forced)} for {len(rows)} prompts")
        longest = max(len(r) for r in rows)
        # The loop runs one step ahead: one position more than the steps it keeps.
        steps = self._step_limit(forced, max_new_base_tokens) + 1
        if longest + steps > self.max_cache_len:
            raise ModelInputError(
                f"{longest} prompt positions + {steps} steps exceed max_cache_len {self.max_cache_len}"
            )
        # Fewer prompts than rows: the spare rows repeat the last prompt (their output is dropped).
        return rows + [rows[-1]] * (self.batch_size - len(rows))

    @staticmethod
    def _step_limit(forced: Sequence[Sequence[int]] | None, max_new_base_tokens: int) -> int:
        """Decoding steps a call may take: a step gives each row at least one base token."""
        if forced is None:
            return max_new_base_tokens
        return min(max_new_base_tokens, max(len(f) for f in forced))

    def _forced_codes(self, forced: Sequence[Sequence[int]], index: int, done: np.ndarray, count: int) -> np.ndarray:
        """Row codes at generated position ``index``: the forced ones, a pad id for rows done."""
        pad = self.pad_id
        codes = np.full(self.batch_size, pad, dtype=np.int64)
        for row in range(count):
            if not done[row] and index < len(forced[row]):
                codes[row] = int(forced[row][index])
        return codes

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_base_tokens: int,
        forced: Sequence[Sequence[int]] | None = None,
        seed: int | None = None,
    ) -> GenerationOutput:
        """Generation from prompt ids (base) or codes (zip2zip), one prompt per row: greedy, or
        sampled as the generator's ``sampling`` says.

        Args:
            prompts: at most ``batch_size`` prompts (their ids, or codes from an empty codebook).
            max_new_base_tokens: a row ends once it has generated this many base tokens (or EOS).
            forced: instead of the model's choice, feed these ids/codes (one stream per prompt;
                a row ends when its stream does): for timing a given code stream.
            seed: ``torch.manual_seed(seed)`` before the prompt's pass (sampling then draws
                the same ids for the same seed; transformers' ``generate()`` seeded the same way
                draws them too, given the same logits and a batch of ``batch_size`` prompts).

        Raises:
            ModelInputError: too many prompts, an empty prompt, or more positions than the cache has.
            InvalidCodeError: (zip2zip) a prompt or forced code the codebook cannot read.
        """
        rows = self._check_prompts(prompts, forced, max_new_base_tokens)
        self._initialise()
        self._reset()
        if seed is not None:
            torch.manual_seed(seed)
        count = len(prompts)
        _sync(self.device)
        start = time.perf_counter()
        first = self._prefill(rows)
        prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        tokens: list[list[int]] = [[] for _ in rows]
        greedy: list[list[int]] = [[] for _ in rows]
        base_tokens = [0] * len(rows)
        done = np.zeros(len(rows), dtype=bool)
        done[count:] = True
        step_limit = self._step_limit(forced, max_new_base_tokens)
        chosen = first  # the codes the model chose at the last step (step 0: prefill)
        codes = first if forced is None else self._forced_codes(forced, 0, done, count)
        ahead = self._queue_ahead(1, None if forced is None else codes)
        steps = 0
        while True:
            for row in np.flatnonzero(~done):
                greedy[row].append(int(chosen[row]))
            lengths = self._observe(codes, not ahead)
            for row in np.flatnonzero(~done):
                code = int(codes[row])
                if code in self.stop_ids and forced is None:
                    done[row] = True
                    continue
                tokens[row].append(code)
                base_tokens[row] += int(lengths[row])
                if base_tokens[row] >= max_new_base_tokens or (
                    forced is not None and len(tokens[row]) >= len(forced[int(row)])
                ):
                    done[row] = True
            if done.all() or steps >= step_limit:
                break
            steps += 1
            self._queue_rest(steps, ahead)
            self._queue_read(steps)
            upcoming = None if forced is None else self._forced_codes(forced, steps, done, count)
            ahead = self._queue_ahead(steps + 1, upcoming)
            chosen = self._collect(steps)
            codes = chosen if upcoming is None else upcoming
        decode_seconds = time.perf_counter() - start
        _sync(self.device)  # the step queued ahead is dropped
        return GenerationOutput(
            tokens=tokens[:count],
            base_tokens=base_tokens[:count],
            texts=self._texts(tokens[:count]),
            prompt_positions=max(len(r) for r in rows),
            steps=steps,
            prefill_seconds=prefill_seconds,
            decode_seconds=decode_seconds,
            kv_bytes_per_position=self.kv_bytes_per_position,
            greedy=greedy[:count],
        )

    def _prefill(self, rows: list[list[int]]) -> np.ndarray:
        """Run the prompts' forward pass; return the first generated ids or codes."""
        inputs = self._prefill_inputs(rows)
        if not self.prefill_graphs:
            device_inputs = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
            with torch.no_grad(), no_mha_fastpath():
                self._prefill_body(device_inputs)
        else:
            key = tuple(tuple(v.shape) for v in inputs.values())
            if key not in self._prefills:
                static = {k: v.to(self.device) for k, v in inputs.items()}
                graph = self._capture_graph(
                    lambda: self._prefill_body(static), self._reset, torch.cuda.Stream(self.device)
                )
                pinned = {k: torch.empty_like(v).pin_memory() for k, v in inputs.items()}
                self._prefills[key] = (graph, static, pinned)
                self._reset()
            graph, static, pinned = self._prefills[key]
            for name, value in inputs.items():  # through pinned buffers: the copies do not block
                pinned[name].copy_(value)
                static[name].copy_(pinned[name], non_blocking=True)
            graph.replay()
        self._queue_read(0)
        return self._collect(0)

    def _left_pad(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        pad = self.pad_id
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), pad, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = row
            mask[i, length - len(row) :] = 1
        return ids, mask
