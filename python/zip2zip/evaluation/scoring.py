"""Bits per byte and compression: a zip2zip model against its own base model (``zip2zip eval``).

* Bits per byte on held-out text, per domain (a file's domain is its folder's name): the text is
  tokenized, cut into windows of ``--window`` base tokens; the base model (the adapter disabled)
  scores tokens 1.. of each window, the zip2zip model scores codes 1.. of the window's canonical
  encoding (strict: one segmentation, the one the tokenizer gives). Bytes are those of the
  scored tokens or codes. A code whose entry is not installed when it is read (the rare KwKwK
  case) cannot be predicted at all; it is left out with its bytes, and counted.
* Input compression: base tokens per code of the same windows.
* Where the bits go: the scored codes split by kind (hypertokens, base ids), and for each kind
  the zip2zip model's nats over the base model's nats for the same base tokens. A gap that sits
  on the hypertoken targets is the hyper-encoders' and the choice to write an entry; one on the
  base-id targets is the adapter's drift from the base model.
* With ``--answers``: both models' answers to code tasks and fact questions that a program
  checks (`zip2zip.evaluation.answers`): how many are right.
* Generation compression: base tokens per generated code, greedy, on built-in chat and code
  prompts. Next to it, what the tokenizer makes of the same answers: base tokens per code of
  their canonical encoding after the prompt (the longest installed match at every step). A model
  that always picks the longest match reaches it exactly; only a segmentation other than the
  greedy one could do better, so on a short answer with few repeats the figure is low whatever
  the model does.

``--plot FILE.svg`` also draws the per-domain bits per byte of both models and the input
compression as a self-contained SVG (no plotting library needed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zip2zip.evaluation.prompts import user_turn
from zip2zip.modeling.canonical import mask_non_canonical_, non_canonical_mask
from zip2zip.modeling.lora import base_only
from zip2zip.training.data import code_lengths


def _device(model: Any) -> torch.device:
    device: torch.device = next(model.parameters()).device
    return device


def score_text(model: Any, tokenizer: Any, text: str, window: int, max_windows: int | None = None) -> dict[str, float]:
    """Sums over the windows of ``text``: base and zip2zip NLL (nats), scored bytes, tokens,
    codes, KwKwK codes left out."""
    base = tokenizer.base
    ids = base.backend_tokenizer.encode(text, add_special_tokens=False).ids
    device = _device(model)
    vocab = tokenizer.vocab_size
    totals = dict(
        base_nats=0.0, base_bytes=0, zip_nats=0.0, zip_nats_canonical=0.0, zip_bytes=0, tokens=0, codes=0, kwkwk=0
    )
    for kind in ("hyper", "base"):  # where the bits go: by the kind of the code predicted
        totals.update({f"{kind}_targets": 0, f"zip_nats_{kind}": 0.0, f"base_nats_{kind}": 0.0})
    starts = range(0, max(len(ids) - 1, 0), window)
    for number, start in enumerate(starts):
        if max_windows is not None and number >= max_windows:
            break
        piece = ids[start : start + window]
        if len(piece) < 2:
            continue
        tensor = torch.tensor([piece], device=device)
        with torch.no_grad(), base_only(model) as plain:
            logits = plain(input_ids=tensor).logits[0, :-1].float()
        base_nll = F.cross_entropy(logits, tensor[0, 1:], reduction="none").double().cpu()  # token i+1's
        totals["base_nats"] += float(base_nll.sum())
        totals["base_bytes"] += len(base.decode(piece[1:]).encode("utf-8"))
        totals["tokens"] += len(piece)

        encoding = tokenizer.encode_ids(piece)
        codes = torch.from_numpy(encoding.codes.astype("int64"))
        installed = torch.from_numpy(encoding.installed.astype("int64"))
        lengths = code_lengths(encoding, vocab)
        # Code t+1 is predictable only if its entry was installed after code t.
        predictable = codes[1:] < vocab + installed[:-1]
        labels = codes.clone()
        labels[1:][~predictable] = -100
        batch = {
            "input_ids": codes[None].to(device),
            "installed": installed[None].to(device),
            "codebook": torch.from_numpy(encoding.codebook.astype("int64"))[None].to(device),
            "codebook_lengths": torch.from_numpy(encoding.codebook_lengths.astype("int64"))[None].to(device),
        }
        with torch.no_grad():
            zip_logits = model(**batch).logits[0, :-1].float()
        zip_nll = F.cross_entropy(zip_logits, labels[1:].to(device), ignore_index=-100, reduction="none").double()
        zip_nll = zip_nll.cpu()
        totals["zip_nats"] += float(zip_nll[predictable].sum())
        # The same model with the codes canonical encoding cannot emit next masked out (the
        # next code's probability renormalised over the rest; `zip2zip.modeling.canonical`).
        excluded = non_canonical_mask(
            batch["input_ids"], batch["codebook"], batch["codebook_lengths"], batch["installed"], vocab
        )[0, :-1]
        masked_nll = F.cross_entropy(
            mask_non_canonical_(zip_logits, excluded), labels[1:].to(device), ignore_index=-100, reduction="none"
        )
        totals["zip_nats_canonical"] += float(masked_nll.double().cpu()[predictable].sum())
        # The base model's nats for the tokens each scored code stands for (tokens s..e-1 of the
        # window; base_nll[i] is token i+1's), split by the kind of the code.
        ends = np.cumsum(lengths)
        spent = np.concatenate([[0.0], np.cumsum(base_nll.numpy())])
        per_code = spent[ends[1:] - 1] - spent[ends[:-1] - 1]
        hyper = (codes[1:] >= vocab).numpy()
        for kind, chosen in (("hyper", hyper), ("base", ~hyper)):
            chosen = chosen & predictable.numpy()
            totals[f"{kind}_targets"] += int(chosen.sum())
            totals[f"zip_nats_{kind}"] += float(zip_nll.numpy()[chosen].sum())
            totals[f"base_nats_{kind}"] += float(per_code[chosen].sum())
        expanded = tokenizer.expand(encoding.codes)
        scored_tokens = expanded[int(lengths[0]) :]
        totals["zip_bytes"] += len(base.decode(scored_tokens.tolist()).encode("utf-8"))
        left_out = (~predictable).nonzero()[:, 0] + 1
        if len(left_out):
            totals["kwkwk"] += len(left_out)
            for position in left_out.tolist():
                phrase = expanded[int(ends[position] - lengths[position]) : int(ends[position])]
                totals["zip_bytes"] -= len(base.decode(phrase.tolist()).encode("utf-8"))
        totals["codes"] += len(codes)
    return totals


def canonical_codes(tokenizer: Any, prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> int:
    """Codes the canonical encoding of ``prompt_ids + answer_ids`` spends on the answer: those
    that end inside it (a code spanning the boundary counts for the answer)."""
    encoding = tokenizer.encode_ids(np.asarray(list(prompt_ids) + list(answer_ids), dtype=np.uint32))
    ends = code_lengths(encoding, tokenizer.vocab_size).cumsum()
    return int((ends > len(prompt_ids)).sum())


def generation_compression(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_codes: int) -> dict[str, Any]:
    """Base tokens per generated code (greedy), the same for the canonical encoding of the
    answers, and the answers."""
    device = _device(model)
    generated_codes = generated_tokens = canonical_total = 0
    answers = []
    for prompt in prompts:
        batch = user_turn(tokenizer, prompt, return_tensors="pt", return_dict=True)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_codes, do_sample=False)
        prompt_codes = batch["input_ids"][0].tolist()
        new = out[0, len(prompt_codes) :].tolist()
        state = tokenizer.state_after(prompt_codes)
        tokens = tokenizer.expand(new, state)
        canonical = canonical_codes(tokenizer, tokenizer.expand(prompt_codes).tolist(), tokens.tolist())
        generated_codes += len(new)
        generated_tokens += len(tokens)
        canonical_total += canonical
        answers.append(
            {
                "prompt": prompt,
                "codes": len(new),
                "base_tokens": len(tokens),
                "canonical_codes": canonical,
                "text": tokenizer.decode(new, state=state),
            }
        )
    return {
        "codes": generated_codes,
        "base_tokens": generated_tokens,
        "tokens_per_code": generated_tokens / max(generated_codes, 1),
        "canonical_codes": canonical_total,
        "canonical_tokens_per_code": generated_tokens / max(canonical_total, 1),
        "answers": answers,
    }


def evaluate(
    model: Any,
    tokenizer: Any,
    files: Sequence[str],
    *,
    window: int = 1024,
    max_windows: int | None = None,
    prompts: dict[str, list[str]] | None = None,
    max_new_codes: int = 64,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Per-domain scores and generation compression; see the module's docstring. ``progress``
    is called after each file is scored."""
    domains: dict[str, dict[str, float]] = {}
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no such evaluation file: {path}")
        scores = score_text(model, tokenizer, path.read_text(encoding="utf-8", errors="replace"), window, max_windows)
        sums = domains.setdefault(path.parent.name or "text", {k: 0.0 for k in scores})
        for key, value in scores.items():
            sums[key] += value
        if progress is not None:
            progress()
    rows: dict[str, dict[str, float]] = {}
    for domain, t in domains.items():
        rows[domain] = {
            **t,
            "base_bpb": t["base_nats"] / max(t["base_bytes"], 1) / math.log(2),
            "zip_bpb": t["zip_nats"] / max(t["zip_bytes"], 1) / math.log(2),
            "zip_bpb_canonical": t["zip_nats_canonical"] / max(t["zip_bytes"], 1) / math.log(2),
            "input_compression": t["tokens"] / max(t["codes"], 1),
        }
        rows[domain]["bpb_ratio"] = rows[domain]["zip_bpb"] / max(rows[domain]["base_bpb"], 1e-12)
        rows[domain]["bpb_ratio_canonical"] = rows[domain]["zip_bpb_canonical"] / max(rows[domain]["base_bpb"], 1e-12)
        for kind in ("hyper", "base"):  # the two models' nats for the same tokens
            rows[domain][f"{kind}_nats_ratio"] = t[f"zip_nats_{kind}"] / max(t[f"base_nats_{kind}"], 1e-12)
        rows[domain]["hyper_share"] = t["hyper_targets"] / max(t["hyper_targets"] + t["base_targets"], 1)
    generation = {
        name: generation_compression(model, tokenizer, ps, max_new_codes) for name, ps in (prompts or {}).items()
    }
    return {"domains": rows, "generation": generation}
