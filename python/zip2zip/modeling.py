# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls, allow-subclassing-any
"""`Zip2ZipForCausalLM`: any Hugging Face causal LM reading and writing hypertokens.

The wrapper owns the base model unchanged (its config and weights are never mutated) and a
:class:`~zip2zip.nn.HyperEmbedding`. Inputs are codes plus the per-sequence codebooks and
installed counts that `Zip2ZipTokenizer.__call__` returns, so
``model(**tokenizer(texts, padding=True, return_tensors="pt"))`` works.

Status: forward (with the loss) and save/load; ``generate()`` is not implemented yet.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from zip2zip._core import ConfigError
from zip2zip.nn import HyperEmbedding

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
        position_mode: ``"base"`` (a code sits at the base-token index of its last token) or
            ``"compressed"`` (one position per code).

    Raises:
        ValueError: an invalid ``position_mode`` or encoder shape.
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
        position_mode: str = "base",
        **kwargs: Any,
    ) -> None:
        if position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {position_mode!r}")
        if encoder_layers < 0 or encoder_heads < 1:
            raise ValueError(f"invalid encoder shape: layers={encoder_layers}, heads={encoder_heads}")
        self.base_config = dict(base_config or {})
        self.vocab_size = vocab_size
        self.max_codebook_size = max_codebook_size
        self.max_subtokens = max_subtokens
        self.disabled_ids = list(disabled_ids or [])
        self.encoder_layers = encoder_layers
        self.encoder_heads = encoder_heads
        self.encoder_latent_size = encoder_latent_size
        self.tied_encoders = tied_encoders
        self.position_mode = position_mode
        super().__init__(**kwargs)

    def base_model_config(self) -> PretrainedConfig:
        """The base model's config object."""
        if "model_type" not in self.base_config:
            raise ValueError("base_config has no model_type")
        data = dict(self.base_config)
        return AutoConfig.for_model(data.pop("model_type"), **data)


class Zip2ZipForCausalLM(PreTrainedModel):
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
        )
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # The base model arrives initialised (or loaded); the hyper-encoders initialise
        # themselves (zero output projections). Nothing to do here.
        return

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Zip2ZipForCausalLM:
        """Load a saved model; missing or unexpected weights raise instead of being initialised
        at random (a silently random encoder would look like a trained one).

        Raises:
            ValueError: the checkpoint lacks weights the model has, or has weights it lacks, or
                their shapes differ.
        """
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
        **overrides: Any,
    ) -> Zip2ZipForCausalLM:
        """Wrap a base causal LM for the codebook of ``tokenizer`` (a `Zip2ZipTokenizer`).

        Args:
            model_or_path: a loaded model, a folder, a hub id or a GGUF file.
            tokenizer: the `Zip2ZipTokenizer` whose codes the model reads.
            model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` when loading.
            overrides: `Zip2ZipConfig` fields (encoder shape, ``position_mode``...).

        Raises:
            ConfigError: the tokenizer's vocab_size is not the model's embedding rows.
        """
        if isinstance(model_or_path, PreTrainedModel):
            base = model_or_path
        else:
            path = os.fspath(model_or_path)
            kwargs = dict(model_kwargs or {})
            if path.endswith(".gguf") and os.path.isfile(path):
                base = AutoModelForCausalLM.from_pretrained(os.path.dirname(path) or ".", gguf_file=os.path.basename(path), **kwargs)
            else:
                base = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        codec = tokenizer.config
        config = Zip2ZipConfig(
            base_config=base.config.to_dict(),
            vocab_size=codec.vocab_size,
            max_codebook_size=codec.max_codebook_size,
            max_subtokens=codec.max_subtokens,
            disabled_ids=list(codec.disabled_ids),
            **overrides,
        )
        return cls(config, base_model=base)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        codebook: torch.Tensor | None = None,
        codebook_lengths: torch.Tensor | None = None,
        installed: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
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

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` ``[B, L, V + K]`` (slots not installed
            at a position are ``-inf``) and ``loss`` when ``labels`` are given.

        Raises:
            ValueError: codes out of range, hypertokens without codebook or installed counts,
                or shapes that disagree.
        """
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
        embedding = self.base.get_input_embeddings()
        head = self.base.get_output_embeddings().weight

        def head_rows(ids: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.embedding(ids, head)

        input_rows = self.hyper.encode_rows(embedding, codebook, codebook_lengths, self.hyper.input_encoder)
        output_rows = self.hyper.encode_rows(head_rows, codebook, codebook_lengths, self.hyper.output_encoder)
        inputs_embeds = self.hyper.input_embeddings(input_ids, embedding, input_rows)
        if position_ids is None:
            if past_key_values is not None:
                raise ValueError("with past_key_values, pass position_ids (positions continue the cache)")
            position_ids = self.hyper.position_ids(input_ids, codebook_lengths, attention_mask, config.position_mode)
        outputs = self.base.get_decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )
        softcap = getattr(self.base.config.get_text_config(), "final_logit_softcapping", None)
        logits = self.hyper.logits(outputs.last_hidden_state, head, output_rows, installed, softcap)
        loss = None if labels is None else self.hyper.loss(logits, labels, installed)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=getattr(outputs, "past_key_values", None),
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )
