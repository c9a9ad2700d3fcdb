"""Training data: text and JSONL -> base ids -> windows of a fixed number of codes.

* Documents are read from ``.txt``/``.md``/source files (one document per file) and ``.jsonl``
  files (one per line: ``{"text": ...}``, or ``{"messages": [...]}`` rendered with the base
  tokenizer's chat template, only the assistant turns scored).
* They are tokenized in one batched call (Rust), each followed by EOS, which is scored, and
  concatenated into one stream of base ids with a loss mask.
* The stream is cut into windows that compress to exactly ``window_codes`` codes: the start of
  each window is the base token after the last code of the previous one, so no base token is
  dropped at a boundary. Each window is compressed from an empty codebook (DataLoader workers do
  this on the fly), which gives the codes, the installed counts (exact output availability) and
  the codebook. A code is scored only when all its base tokens are.
* With a read-back mask (`read_back_mask`, ``zip2zip train --read-back-answers``), the codes that
  lie wholly in a chat answer are read as the base ids they stand for, as
  ``generate(canonical_inputs=True, read_output_as="base_ids")`` reads the model's own codes; each
  code stays the target at its first base id (`expand_read_back`).

`CodeWindows` is a ``torch.utils.data.Dataset``; `collate_windows` pads a batch's codebooks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zip2zip.codec import encode_ids
from zip2zip.errors import TrainingError
from zip2zip.files import collect_files
from zip2zip.ops.reference import IGNORE_INDEX

# File names a data folder is searched for (hidden files and folders are skipped).
DATA_GLOBS = (
    "*.txt",
    "*.md",
    "*.rst",
    "*.py",
    "*.rs",
    "*.c",
    "*.h",
    "*.js",
    "*.ts",
    "*.go",
    "*.java",
    "*.sh",
    "*.tex",
    "*.html",
    "*.jsonl",
)


@dataclass
class Document:
    """One training document: its text, or chat messages."""

    text: str | None = None
    messages: list[dict[str, str]] | None = None
    source: str = ""


def read_documents(paths: Sequence[str | os.PathLike[str]]) -> list[Document]:
    """Documents of the given files and folders (folders are searched for `DATA_GLOBS`).

    Raises:
        FileNotFoundError: a path does not exist.
        TrainingError: a folder without data files, or a JSONL line that is not an object with
            ``text`` or ``messages``.
    """
    documents: list[Document] = []
    for file, label in collect_files(paths, DATA_GLOBS):
        if file.suffix == ".jsonl":
            documents.extend(_read_jsonl(file))
        else:
            text = file.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                documents.append(Document(text=text, source=label))
    return documents


def _read_jsonl(file: Path) -> list[Document]:
    out = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainingError(f"{file}:{number}: not JSON: {error}") from error
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                out.append(Document(text=record["text"], source=f"{file}:{number}"))
            elif isinstance(record, dict) and isinstance(record.get("messages"), list):
                messages = record["messages"]
                if not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages
                ):
                    raise TrainingError(f"{file}:{number}: every message needs a string role and content")
                out.append(Document(messages=messages, source=f"{file}:{number}"))
            else:
                raise TrainingError(f"{file}:{number}: expected an object with a 'text' string or a 'messages' list")
    return out


def _chat_ids(base: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Ids of a rendered conversation and its mask: 1 on the assistant turns (the tokens after
    each generation prompt up to the end of that turn), 0 elsewhere."""

    def render(part: list[dict[str, str]], prompt: bool) -> list[int]:
        ids = base.apply_chat_template(part, tokenize=True, add_generation_prompt=prompt)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    ids = render(messages, False)
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render(messages[:i], True))
        end = len(render(messages[: i + 1], False))
        for j in range(start, min(end, len(ids))):
            mask[j] = 1
    return ids, mask


def tokenize_documents(tokenizer: Any, documents: Sequence[Document]) -> tuple[np.ndarray, np.ndarray]:
    """One stream of base ids (each document followed by EOS) and its loss mask (uint8).

    Args:
        tokenizer: a `Zip2ZipTokenizer` (its base tokenizer does the work).

    Raises:
        TrainingError: the base tokenizer has no EOS token.
    """
    ids, mask, _starts = tokenize_document_stream(tokenizer, documents)
    return ids, mask


def tokenize_document_stream(
    tokenizer: Any, documents: Sequence[Document]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`tokenize_documents`, and where each document starts in the stream (int64, ascending)."""
    base = tokenizer.base
    eos = base.eos_token_id
    if eos is None:
        raise TrainingError("the base tokenizer has no eos_token_id: documents could not be separated")
    texts = [d.text for d in documents if d.text is not None]
    encoded = iter(base.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False) if texts else [])
    pieces: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for document in documents:
        if document.text is not None:
            ids = list(next(encoded).ids) + [eos]
            mask = [1] * len(ids)
        else:
            assert document.messages is not None
            ids, mask = _chat_ids(base, document.messages)
            ids.append(eos)
            mask.append(1)
        pieces.append(np.asarray(ids, dtype=np.int32))
        masks.append(np.asarray(mask, dtype=np.uint8))
    if not pieces:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum([len(piece) for piece in pieces[:-1]])]).astype(np.int64)
    return np.concatenate(pieces), np.concatenate(masks), starts


def read_back_mask(
    documents: Sequence[Document], mask: np.ndarray, starts: np.ndarray, share: float, seed: int = 0
) -> np.ndarray:
    """``[n]`` uint8: 1 on the answer tokens (``mask``'s assistant turns and closing EOS) of a
    ``share`` of the chat documents, drawn with ``seed`` (the same documents every run), 0
    elsewhere; `CodeWindows` reads the codes there as base ids.

    Raises:
        TrainingError: ``share`` outside [0, 1], or ``starts`` not one per document.
    """
    if not 0.0 <= share <= 1.0:
        raise TrainingError(f"the read-back share must be in [0, 1], got {share}")
    if len(starts) != len(documents):
        raise TrainingError(f"{len(starts)} document starts for {len(documents)} documents")
    out = np.zeros(len(mask), dtype=np.uint8)
    drawn = np.random.default_rng(seed).random(len(documents)) < share
    ends = [*starts[1:].tolist(), len(mask)]
    for document, start, end, chosen in zip(documents, starts.tolist(), ends, drawn):
        if chosen and document.messages is not None:
            out[start:end] = mask[start:end]
    return out


def expand_read_back(
    codes: np.ndarray,
    labels: np.ndarray,
    installed: np.ndarray,
    lengths: np.ndarray,
    ids: np.ndarray,
    read_back: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A window's codes with those wholly inside ``read_back`` read as their base ids.

    A code of ``k`` base ids there becomes ``k`` positions holding its base ids: its label (the
    code itself, predicted from the position before) stays on the first, the other ``k - 1``
    predict nothing (-100), and all ``k`` keep the code's installed count (the codebook depends
    on the text only). So the last base id of a code predicts the next code, as it does when
    ``generate(..., read_output_as="base_ids")`` reads a written code back.

    Args:
        codes, labels, installed, lengths: ``[L]`` per code (`CodeWindows`).
        ids: the window's ``[N]`` base ids (``N = lengths.sum()``); read_back: ``[N]`` 0/1.

    Returns:
        ``(input_ids, labels, installed, ends)``, each ``[L']``: ``ends`` is the index in ``ids``
        of each position's last base token (what the distillation teacher reads up to).
    """
    offsets = np.cumsum(lengths) - lengths
    if not len(codes):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    expand = np.minimum.reduceat(read_back, offsets).astype(bool) & (lengths > 1)
    counts = np.where(expand, lengths, 1)
    code = np.repeat(np.arange(len(codes)), counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    spread = expand[code]
    inputs = np.where(spread, ids[offsets[code] + within].astype(np.int64), codes[code])
    out_labels = np.where(within == 0, labels[code], IGNORE_INDEX)
    ends = np.where(spread, offsets[code] + within, offsets[code] + lengths[code] - 1)
    return inputs, out_labels, installed[code], ends


def code_lengths(encoding: Any, vocab: int) -> np.ndarray:
    """Base tokens each code of an `Encoding` stands for (int64)."""
    codes = encoding.codes.astype(np.int64)
    lengths = np.ones(len(codes), dtype=np.int64)
    hyper = codes >= vocab
    if hyper.any():
        lengths[hyper] = encoding.codebook_lengths[codes[hyper] - vocab]
    return lengths


class CodeWindows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Windows of a base-id stream that each compress to exactly ``window_codes`` codes (the
    last may be shorter); compression happens in ``__getitem__``, so in DataLoader workers.

    Args:
        tokenizer: the `Zip2ZipTokenizer` (its codec config is used).
        ids: ``[n]`` base ids; mask: ``[n]`` 1 where the token is scored.
        window_codes: codes per window.
        document_starts: where documents start in ``ids`` (`tokenize_document_stream`). Given,
            a window never spans two documents: each document starts a window, so its codebook
            starts empty, as a generation's does from its prompt, and its last window may be
            shorter. Without it, windows run on across documents (no padding).
        plain_tokens: also give each window's first ``plain_tokens`` base ids as ``plain_ids``
            (for ``zip2zip train --adapter-kl``); 0: not.
        teacher_ids: also give each window's base ids as ``window_ids`` and, per code, the
            index in them of its last base token as ``code_ends`` (for ``zip2zip train
            --distill``, whose teacher reads the base ids).
        read_back: ``[n]`` 0/1, 1 where codes are read as base ids (`read_back_mask`,
            `expand_read_back`); None: codes everywhere.

    Raises:
        TrainingError: ``window_codes`` below 2, ``mask`` or ``read_back`` of another length, or
            document starts out of order or range.
    """

    def __init__(
        self,
        tokenizer: Any,
        ids: np.ndarray,
        mask: np.ndarray,
        window_codes: int,
        document_starts: np.ndarray | None = None,
        plain_tokens: int = 0,
        teacher_ids: bool = False,
        read_back: np.ndarray | None = None,
    ) -> None:
        if window_codes < 2:
            raise TrainingError(f"window_codes must be at least 2, got {window_codes}")
        if len(ids) != len(mask):
            raise TrainingError(f"ids ({len(ids)}) and mask ({len(mask)}) differ in length")
        if read_back is not None and len(read_back) != len(ids):
            raise TrainingError(f"ids ({len(ids)}) and read_back ({len(read_back)}) differ in length")
        self.read_back = None if read_back is None else np.ascontiguousarray(read_back, dtype=np.uint8)
        self.config = tokenizer.config
        self.ids = np.ascontiguousarray(ids, dtype=np.int32)
        self.mask = np.ascontiguousarray(mask, dtype=np.uint8)
        self.window_codes = window_codes
        self.plain_tokens = plain_tokens
        self.teacher_ids = teacher_ids
        cuts = np.asarray([] if document_starts is None else document_starts, dtype=np.int64)
        if len(cuts) and (cuts.min() < 0 or cuts.max() >= max(len(ids), 1) or (np.diff(cuts) <= 0).any()):
            raise TrainingError(f"document_starts must ascend strictly within [0, {len(ids)})")
        self.starts = self._boundaries(cuts)

    def _boundaries(self, cuts: np.ndarray) -> np.ndarray:
        """Start of each window: compressing ``S * window_codes`` tokens gives at least
        ``window_codes`` codes; the first ``window_codes`` of them cover the window. A window
        also ends where the next document of ``cuts`` starts."""
        vocab, span = self.config.vocab_size, self.config.max_subtokens * self.window_codes
        total = len(self.ids)
        segment_ends = [int(c) for c in cuts if c > 0] + [total]
        starts = [0]
        position = 0
        for end in segment_ends:
            while position < end:
                encoding = encode_ids(self.config, self.ids[position : min(position + span, end)])
                position += int(code_lengths(encoding, vocab)[: self.window_codes].sum())
                starts.append(position)
        return np.asarray(starts, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def base_tokens(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start, end = int(self.starts[index]), int(self.starts[index + 1])
        encoding = encode_ids(self.config, self.ids[start:end])
        codes = encoding.codes.astype(np.int64)
        lengths = code_lengths(encoding, self.config.vocab_size)
        # A code is scored only when every base token it stands for is.
        ends = np.cumsum(lengths)
        scored = np.minimum.reduceat(self.mask[start:end], ends - lengths) if len(codes) else np.zeros(0, np.uint8)
        labels = np.where(scored.astype(bool), codes, IGNORE_INDEX)
        installed = encoding.installed.astype(np.int64)
        code_ends = ends - 1
        if self.read_back is not None and self.read_back[start:end].any():
            codes, labels, installed, code_ends = expand_read_back(
                codes, labels, installed, lengths, self.ids[start:end], self.read_back[start:end]
            )
        item = {
            "input_ids": torch.from_numpy(codes),
            "labels": torch.from_numpy(labels),
            "installed": torch.from_numpy(installed),
            "codebook": torch.from_numpy(encoding.codebook.astype(np.int64)),
            "codebook_lengths": torch.from_numpy(encoding.codebook_lengths.astype(np.int64)),
            "base_tokens": torch.tensor(end - start),
        }
        if self.plain_tokens:
            item["plain_ids"] = torch.from_numpy(self.ids[start : min(end, start + self.plain_tokens)].astype(np.int64))
        if self.teacher_ids:
            item["window_ids"] = torch.from_numpy(self.ids[start:end].astype(np.int64))
            item["code_ends"] = torch.from_numpy(code_ends)
        return item


def collate_windows(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch: codes padded on the right (mask 0, label -100), codebooks padded to the most
    entries in the batch (length 0), plain ids (if the windows have them) padded with
    ``plain_mask`` 0, and window ids (if they have them) padded with ``window_mask`` 0, their
    ``code_ends`` with 0."""
    length = max(len(item["input_ids"]) for item in items)
    entries = max(item["codebook"].shape[0] for item in items)
    slots = items[0]["codebook"].shape[1]
    batch = len(items)
    out = {
        "input_ids": torch.zeros(batch, length, dtype=torch.long),
        "labels": torch.full((batch, length), IGNORE_INDEX, dtype=torch.long),
        "attention_mask": torch.zeros(batch, length, dtype=torch.long),
        "installed": torch.zeros(batch, length, dtype=torch.long),
        "codebook": torch.zeros(batch, entries, slots, dtype=torch.long),
        "codebook_lengths": torch.zeros(batch, entries, dtype=torch.long),
        "base_tokens": torch.stack([item["base_tokens"] for item in items]),
    }
    if "plain_ids" in items[0]:
        width = max(len(item["plain_ids"]) for item in items)
        out["plain_ids"] = torch.zeros(batch, width, dtype=torch.long)
        out["plain_mask"] = torch.zeros(batch, width, dtype=torch.long)
        for row, item in enumerate(items):
            out["plain_ids"][row, : len(item["plain_ids"])] = item["plain_ids"]
            out["plain_mask"][row, : len(item["plain_ids"])] = 1
    if "window_ids" in items[0]:
        width = max(len(item["window_ids"]) for item in items)
        out["window_ids"] = torch.zeros(batch, width, dtype=torch.long)
        out["window_mask"] = torch.zeros(batch, width, dtype=torch.long)
        out["code_ends"] = torch.zeros(batch, length, dtype=torch.long)
        for row, item in enumerate(items):
            out["window_ids"][row, : len(item["window_ids"])] = item["window_ids"]
            out["window_mask"][row, : len(item["window_ids"])] = 1
            out["code_ends"][row, : len(item["code_ends"])] = item["code_ends"]
    for row, item in enumerate(items):
        n, e = len(item["input_ids"]), item["codebook"].shape[0]
        out["input_ids"][row, :n] = item["input_ids"]
        out["labels"][row, :n] = item["labels"]
        out["attention_mask"][row, :n] = 1
        out["installed"][row, :n] = item["installed"]
        out["installed"][row, n:] = item["installed"][-1] if n else 0
        out["codebook"][row, :e] = item["codebook"]
        out["codebook_lengths"][row, :e] = item["codebook_lengths"]
    return out
