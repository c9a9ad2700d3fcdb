"""The hyper-encoder: turns the base rows of a hypertoken's sub-tokens into one row.

One encoder maps an entry's base *input embeddings* to its input vector, another maps its base
*LM-head rows* to its output (unembedding) row. Architecture (DESIGN.md section 4): learned
positions over at most S slots, a few pre-norm transformer layers (optionally in a narrower
latent width), mean pooling over the real sub-tokens only, and a residual
``first-token row + W_out(pooled)`` with ``W_out`` zero-initialised, so that an untrained
hypertoken starts out exactly as its first token.
"""

from __future__ import annotations

import torch
from torch import nn

from zip2zip.errors import ConfigError


class HyperEncoder(nn.Module):
    """Encode ragged phrases of base rows into single rows.

    Args:
        hidden_size: width of the base rows (the model's hidden size).
        max_subtokens: S, the most sub-tokens an entry has.
        num_layers: transformer layers (0 gives a pure "first token + mean" encoder).
        num_heads: attention heads; must divide the latent width.
        latent_size: width inside the encoder (default: ``hidden_size``).

    Raises:
        ConfigError: a size is not positive, or ``num_heads`` does not divide the latent width.
    """

    def __init__(
        self,
        hidden_size: int,
        max_subtokens: int,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        latent_size: int | None = None,
    ) -> None:
        super().__init__()
        latent = latent_size or hidden_size
        if hidden_size < 1 or max_subtokens < 1 or latent < 1 or num_layers < 0 or num_heads < 1:
            raise ConfigError(
                f"invalid HyperEncoder sizes: hidden_size={hidden_size}, max_subtokens={max_subtokens}, "
                f"latent_size={latent}, num_layers={num_layers}, num_heads={num_heads}"
            )
        if latent % num_heads:
            raise ConfigError(f"num_heads={num_heads} must divide the latent width {latent}")
        self.max_subtokens = max_subtokens
        self.num_heads = num_heads
        self.project_in: nn.Module = nn.Linear(hidden_size, latent) if latent != hidden_size else nn.Identity()
        self.positions = nn.Parameter(torch.randn(max_subtokens, latent) * 0.02)
        layer = nn.TransformerEncoderLayer(
            latent, num_heads, dim_feedforward=4 * latent, dropout=0.0, batch_first=True, norm_first=True
        )
        # enable_nested_tensor only helps post-norm layers; off, so torch does not warn.
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False) if num_layers else None
        self.norm = nn.LayerNorm(latent)
        self.project_out = nn.Linear(latent, hidden_size)
        nn.init.zeros_(self.project_out.weight)
        nn.init.zeros_(self.project_out.bias)

    @property
    def num_layers(self) -> int:
        """The transformer layers."""
        return 0 if self.layers is None else len(self.layers.layers)

    def grow(self, num_layers: int) -> int:
        """Deepen to ``num_layers`` transformer layers, the new ones after the existing ones. A
        new layer starts as the identity (pre-norm, with its attention and feed-forward output
        projections zero), so the encoder computes exactly what it did; training then starts
        from the smaller encoder's function with more capacity. Returns the layers added.

        Raises:
            ConfigError: ``num_layers`` is fewer than the encoder has.
        """
        added = num_layers - self.num_layers
        if added < 0:
            raise ConfigError(f"cannot grow a {self.num_layers}-layer hyper-encoder to {num_layers} layers")
        if not added:
            return 0
        latent = self.norm.normalized_shape[0]
        weight = self.norm.weight
        layer = nn.TransformerEncoderLayer(
            latent, self.num_heads, dim_feedforward=4 * latent, dropout=0.0, batch_first=True, norm_first=True
        ).to(device=weight.device, dtype=weight.dtype)
        for projection in (layer.self_attn.out_proj, layer.linear2):
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)
        grown = nn.TransformerEncoder(layer, added, enable_nested_tensor=False)
        if self.layers is None:
            self.layers = grown
        else:
            self.layers.layers.extend(grown.layers)
            self.layers.num_layers = len(self.layers.layers)
        return added

    def forward(self, rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode phrases.

        Args:
            rows: ``[n, S, hidden]`` base rows of each phrase's sub-tokens (padding rows ignored).
            lengths: ``[n]`` number of real sub-tokens of each phrase, 1..S.

        Returns:
            ``[n, hidden]``: ``rows[:, 0] + W_out(mean of the encoded real sub-tokens)``.
        """
        if rows.shape[0] == 0:
            return rows[:, 0]
        slots = rows.shape[1]
        real = torch.arange(slots, device=rows.device)[None, :] < lengths[:, None]
        x = self.project_in(rows) + self.positions[:slots].to(rows.dtype)
        if self.layers is not None:
            x = self.layers(x, src_key_padding_mask=~real)
        x = self.norm(x) * real[..., None].to(x.dtype)
        pooled = x.sum(dim=1) / lengths.clamp(min=1)[:, None].to(x.dtype)
        out: torch.Tensor = rows[:, 0] + self.project_out(pooled)
        return out


class MeanHyperEncoder(nn.Module):
    """The cheap encoder: ``first-token row + W_out(mean of the sub-token rows)``, ``W_out``
    zero-initialised (an untrained hypertoken is its first token).

    Its input stage is :func:`zip2zip.ops.hyper_gather`, which reads each sub-token row once and
    never materialises the ``[n, S, hidden]`` rows (see `HyperEmbedding.encode_rows`).

    Args:
        hidden_size: width of the base rows.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ConfigError(f"invalid MeanHyperEncoder hidden_size={hidden_size}")
        self.project_out = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.project_out.weight)
        nn.init.zeros_(self.project_out.bias)

    def pool(self, first: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """``[n, hidden]`` rows from the first and the mean sub-token rows."""
        out: torch.Tensor = first + self.project_out(mean.to(self.project_out.weight.dtype)).to(first.dtype)
        return out

    def forward(self, rows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Encode already gathered phrases (``rows [n, S, hidden]``, ``lengths [n]`` in 1..S)."""
        if rows.shape[0] == 0:
            return rows[:, 0]
        real = torch.arange(rows.shape[1], device=rows.device)[None, :] < lengths[:, None]
        mean = (rows.float() * real[..., None]).sum(dim=1) / lengths.clamp(min=1)[:, None].float()
        return self.pool(rows[:, 0], mean.to(rows.dtype))
