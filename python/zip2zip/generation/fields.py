"""What generation reads from a left-padded batch of prompt codes: the codebook fields a decoder
builds from them, and where each row's real codes start."""

from __future__ import annotations

from typing import Any

import torch

from zip2zip._core import CodebookConfig
from zip2zip.codec import read_codes


def first_real_positions(mask: torch.Tensor, rows: int) -> list[int]:
    """Per output row, the number of left-padding positions (rows repeat each prompt's evenly
    when ``num_return_sequences`` > 1)."""
    pads = (mask.shape[1] - mask.sum(1)).tolist()
    repeats = max(rows // max(len(pads), 1), 1)
    return [int(p) for p in pads for _ in range(repeats)]


def codebook_fields(config: CodebookConfig, input_ids: torch.Tensor, mask: torch.Tensor | None) -> dict[str, Any]:
    """``codebook``, ``codebook_lengths`` and ``installed`` of left-padded codes, as a decoder
    reads them from an empty codebook (the codes need not be canonical: generated ones are not).

    Raises:
        InvalidCodeError: a row's codes are not a valid code stream.
    """
    rows = input_ids.shape[0]
    mask = torch.ones_like(input_ids) if mask is None else mask
    encodings = [read_codes(config, input_ids[row][mask[row].bool()].cpu().numpy()) for row in range(rows)]
    entries = max((e.num_entries for e in encodings), default=0)
    codebook = input_ids.new_zeros(rows, entries, config.max_subtokens)
    lengths = input_ids.new_zeros(rows, entries)
    installed = torch.zeros_like(input_ids)
    for row, encoding in enumerate(encodings):
        count = encoding.num_entries
        codebook[row, :count] = torch.from_numpy(encoding.codebook.astype("int64"))
        lengths[row, :count] = torch.from_numpy(encoding.codebook_lengths.astype("int64"))
        installed[row, mask[row].bool()] = torch.from_numpy(encoding.installed.astype("int64")).to(input_ids.device)
    return {"codebook": codebook, "codebook_lengths": lengths, "installed": installed}
