"""GPU benchmark of zip2zip.ops, side by side in one run (needs CUDA):

* ``hyper_gather``: achieved GB/s of the Triton kernel next to a device-to-device copy measured
  in the same run, the torch reference, and ``torch.compile`` of the reference;
* ``hyper_cross_entropy`` at T=4096 positions with 2,048 hyper rows: forward + backward time and
  peak memory next to the naive "full logits, then cross-entropy" (eager and compiled).

    python benchmarks/kernels.py [--json results.json]

Times are medians of ``triton.testing.do_bench`` (CUDA events). Bytes of the gather count each
gathered row read once, the two outputs written once and the ids read once.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date

import torch
import torch.nn.functional as F
import triton.testing

from zip2zip.ops import hyper_cross_entropy, hyper_gather, reference


def median_ms(fn, warmup: int = 25, rep: int = 200) -> float:
    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def copy_bandwidth(gib: float = 2.0) -> float:
    """GB/s of a large device-to-device copy (bytes read + bytes written)."""
    count = int(gib * 2**30) // 2
    src = torch.randn(count, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / ms / 1e6


def gather_problem(vocab: int, hidden: int, entries: int, slots: int, seed: int = 0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    weight = torch.randn(vocab, hidden, device="cuda", dtype=torch.bfloat16, generator=generator)
    phrases = torch.randint(0, vocab, (entries, slots), device="cuda", generator=generator)
    # LZW entries are mostly short: lengths 2..S, uniformly.
    lengths = torch.randint(2, slots + 1, (entries,), device="cuda", generator=generator)
    return weight, phrases, lengths


def gather_bytes(weight, phrases, lengths) -> int:
    """Bytes a gather moves: each gathered row read once, both outputs written once, the ids."""
    rows = int(lengths.sum()) + 2 * phrases.shape[0]
    return rows * weight.shape[1] * weight.element_size() + phrases.numel() * 8 + lengths.numel() * 8


GATHER_SHAPES = [(49152, 576, 32768, 4), (128256, 2048, 32768, 4), (128256, 4096, 16384, 8)]
# Tiles tried by --tiles: (entries per program, columns, warps); the first is the
# kernel's layout before 2026-12-07 on a 576-wide table (one entry, 1,024 lanes, 8 warps).
GATHER_TILES = [
    (1, 1024, 8), (1, 1024, 4), (1, 64, 1), (1, 128, 1), (1, 256, 2), (1, 512, 4),
    (2, 64, 1), (4, 64, 2), (8, 64, 4), (16, 64, 4), (16, 64, 8),
    (2, 128, 2), (4, 128, 4), (8, 128, 4), (8, 128, 8), (2, 256, 4), (4, 256, 8), (2, 512, 8),
]  # fmt: skip


def bench_gather_tiles(rows: list[dict], copy_gbs: float) -> None:
    """GB/s of the forward kernel under each tile of GATHER_TILES, checked first, per shape."""
    from zip2zip.ops import triton_kernels

    for vocab, hidden, entries, slots in GATHER_SHAPES:
        weight, phrases, lengths = gather_problem(vocab, hidden, entries, slots)
        nbytes = gather_bytes(weight, phrases, lengths)
        expected = reference.gather_forward(weight, phrases, lengths)
        default = triton_kernels.gather_config(hidden)
        for tile in dict.fromkeys([default, *GATHER_TILES]):
            for got, want in zip(triton_kernels.gather_forward(weight, phrases, lengths, tile), expected):
                torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
            ms = median_ms(lambda: triton_kernels.gather_forward(weight, phrases, lengths, tile))
            backward_ms = median_ms(
                lambda: triton_kernels.gather_backward(expected[0], expected[1], phrases, lengths, vocab, tile)
            )
            rows.append(
                {
                    "shape": f"V={vocab} H={hidden} N={entries} S={slots}",
                    "tile": "x".join(map(str, tile)) + (" (default)" if tile == default else ""),
                    "GBs": nbytes / ms / 1e6,
                    "of_copy": nbytes / ms / 1e6 / copy_gbs,
                    "ms": ms,
                    "backward_ms": backward_ms,
                }
            )


LOSS_TILES = [(2048, 8), (1024, 4), (1024, 8), (4096, 8), (4096, 16), (8192, 16)]  # (columns, warps)


def bench_loss_tiles(rows: list[dict]) -> None:
    """Forward + backward of the chunked loss (frozen head) under each row-kernel tile of
    LOSS_TILES and chunk sizes of 1,024 to 4,096 positions, checked first."""
    import functools

    from zip2zip.ops import default_chunk_size, triton_kernels

    for vocab, hidden_size in [(49152, 576), (128256, 2048)]:
        hidden, weight, hyper_rows, targets, available = loss_problem(vocab, hidden_size, 4096, 2048, False)
        expected = naive_loss(hidden, weight, hyper_rows, targets, available)
        default_chunk = default_chunk_size(vocab, 2048)
        for chunk in dict.fromkeys([default_chunk, 1024, 2048, 4096]):
            for block, warps in LOSS_TILES:
                kernel = functools.partial(triton_kernels.ce_rows, block=block, warps=warps)

                def run(chunk=chunk, kernel=kernel):
                    return reference.cross_entropy_forward(
                        hidden.detach(), weight, hyper_rows.detach(), targets, available, 0.0, chunk,
                        True, False, True, row_kernel=kernel,
                    )  # fmt: skip

                torch.testing.assert_close(run()[0], expected.detach(), rtol=1e-2, atol=1e-2)
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                run()
                torch.cuda.synchronize()
                rows.append(
                    {
                        "shape": f"T=4096 V={vocab} H={hidden_size} E=2048 frozen",
                        "chunk": f"{chunk}" + (" (default)" if chunk == default_chunk else ""),
                        "tile": f"{block}x{warps}",
                        "ms": median_ms(run, warmup=5, rep=100),
                        "MB": (torch.cuda.max_memory_allocated() - before) / 1e6,
                    }
                )


def bench_gather(rows: list[dict], copy_gbs: float) -> None:
    compiled = torch.compile(reference.gather_forward, dynamic=False)
    for vocab, hidden, entries, slots in GATHER_SHAPES:
        weight, phrases, lengths = gather_problem(vocab, hidden, entries, slots)
        nbytes = gather_bytes(weight, phrases, lengths)
        # The kernel, checked against the reference before it is timed.
        ours = hyper_gather(weight, phrases, lengths, check=False)
        for got, want in zip(ours, reference.gather_forward(weight, phrases, lengths)):
            torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
        times = {
            "triton": median_ms(lambda: hyper_gather(weight, phrases, lengths, check=False)),
            "torch": median_ms(lambda: reference.gather_forward(weight, phrases, lengths)),
            "compiled": median_ms(lambda: compiled(weight, phrases, lengths)),
        }
        grad_first = torch.randn(entries, hidden, device="cuda", dtype=torch.bfloat16)
        grad_mean = torch.randn_like(grad_first)
        from zip2zip.ops import triton_kernels

        backward = {
            "triton": median_ms(lambda: triton_kernels.gather_backward(grad_first, grad_mean, phrases, lengths, vocab)),
            "torch": median_ms(lambda: reference.gather_backward(grad_first, grad_mean, phrases, lengths, vocab)),
        }
        row = {
            "shape": f"V={vocab} H={hidden} N={entries} S={slots}",
            "MB": nbytes / 1e6,
            **{f"{name}_ms": ms for name, ms in times.items()},
            **{f"{name}_GBs": nbytes / ms / 1e6 for name, ms in times.items()},
            "triton_of_copy": nbytes / times["triton"] / 1e6 / copy_gbs,
            **{f"backward_{name}_ms": ms for name, ms in backward.items()},
        }
        rows.append(row)


def naive_loss(hidden, weight, rows, targets, available):
    vocab, entries = weight.shape[0], rows.shape[1]
    logits = torch.cat([hidden @ weight.T, hidden @ rows.transpose(1, 2)], dim=-1).float()
    unavailable = torch.arange(vocab + entries, device=hidden.device)[None, None, :] >= (vocab + available)[..., None]
    logits = logits.masked_fill(unavailable, float("-inf"))
    targets = targets.masked_fill(targets >= vocab + available, -100)
    return F.cross_entropy(logits.reshape(-1, vocab + entries), targets.reshape(-1), ignore_index=-100)


def direct_loss(hidden, weight, rows, targets, available):
    """`hyper_cross_entropy`'s chunked pass (Triton row kernel, default chunks, the gradients the
    inputs need) called directly: no custom op, no autograd."""
    from zip2zip.ops import default_chunk_size, triton_kernels

    return reference.cross_entropy_forward(
        hidden.detach(), weight.detach(), rows.detach(), targets, available, 0.0,
        default_chunk_size(weight.shape[0], rows.shape[1]),
        hidden.requires_grad, weight.requires_grad, rows.requires_grad, row_kernel=triton_kernels.ce_rows,
    )  # fmt: skip


def loss_problem(vocab: int, hidden_size: int, length: int, entries: int, train_head: bool, seed: int = 0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    kw = dict(device="cuda", dtype=torch.bfloat16, generator=generator)
    hidden = torch.randn(1, length, hidden_size, **kw).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, **kw) / hidden_size**0.5).requires_grad_(train_head)
    rows = (torch.randn(1, entries, hidden_size, **kw) / hidden_size**0.5).requires_grad_()
    available = torch.clamp(torch.arange(length, device="cuda") // 2, max=entries)[None]
    targets = torch.randint(0, vocab, (1, length), device="cuda", generator=generator)
    use_hyper = torch.rand(1, length, device="cuda", generator=generator) < 0.3
    targets = torch.where(use_hyper & (available > 0), vocab + (available - 1).clamp(min=0), targets)
    return hidden, weight, rows, targets, available


def measure_loss(fn, inputs) -> tuple[float, float]:
    """(median ms of forward + backward, peak MB allocated above the inputs)."""
    differentiable = [t for t in inputs if t.requires_grad]

    def step():
        loss = fn(*inputs)
        torch.autograd.grad(loss, differentiable)

    step()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - before) / 1e6
    return median_ms(step, warmup=5, rep=100), peak


def bench_loss(rows: list[dict]) -> None:
    compiled = torch.compile(naive_loss, dynamic=False)
    for vocab, hidden_size in [(49152, 576), (128256, 2048), (128256, 4096)]:
        for train_head in (False, True):
            inputs = loss_problem(vocab, hidden_size, 4096, 2048, train_head)
            ours = hyper_cross_entropy(*inputs)
            expected = naive_loss(*inputs)
            torch.testing.assert_close(ours, expected, rtol=1e-2, atol=1e-2)
            results = {
                name: measure_loss(fn, inputs)
                for name, fn in [("zip2zip", hyper_cross_entropy), ("naive", naive_loss), ("compiled", compiled)]
            }
            # Where zip2zip's time goes: the same chunked pass called directly (no custom op, no
            # autograd; what `--tiles` times), and the op timed again after the others (order).
            # On an H100 (2026-12-07) `--tiles` gave 1.56 ms where this row gave 2.16 ms.
            direct_ms = median_ms(lambda inputs=inputs: direct_loss(*inputs), warmup=5, rep=100)
            again_ms, _ = measure_loss(hyper_cross_entropy, inputs)
            rows.append(
                {
                    "shape": f"T=4096 V={vocab} H={hidden_size} E=2048 head={'trained' if train_head else 'frozen'}",
                    **{f"{name}_ms": ms for name, (ms, _) in results.items()},
                    **{f"{name}_MB": mb for name, (_, mb) in results.items()},
                    "direct_ms": direct_ms,
                    "zip2zip_again_ms": again_ms,
                    "time_ratio": results["naive"][0] / results["zip2zip"][0],
                    "memory_ratio": results["zip2zip"][1] / results["naive"][1],
                }
            )


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.0f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--tiles",
        action="store_true",
        help="only time the kernels under each tile of GATHER_TILES and LOSS_TILES (and the loss's chunk sizes)",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/kernels.py needs a CUDA GPU", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name()
    copy_gbs = copy_bandwidth()
    if args.tiles:
        tile_rows: list[dict] = []
        loss_tile_rows: list[dict] = []
        bench_gather_tiles(tile_rows, copy_gbs)
        print(f"{gpu}, torch {torch.__version__}, triton {triton.__version__}, {date.today()}")
        print(f"\ndevice-to-device copy: {copy_gbs:.0f} GB/s\n\nhyper_gather tiles (entries x columns x warps):")
        print(table(tile_rows, ["shape", "tile", "GBs", "of_copy", "ms", "backward_ms"]), flush=True)
        bench_loss_tiles(loss_tile_rows)
        print("\nhyper_cross_entropy row-kernel tiles (columns x warps), forward + backward:")
        print(table(loss_tile_rows, ["shape", "chunk", "tile", "ms", "MB"]))
        if args.json:
            with open(args.json, "w") as f:
                summary = {"gpu": gpu, "date": str(date.today()), "copy_GBs": copy_gbs}
                json.dump({**summary, "gather": tile_rows, "loss": loss_tile_rows}, f, indent=1)
        return 0
    gather_rows: list[dict] = []
    loss_rows: list[dict] = []
    bench_gather(gather_rows, copy_gbs)
    bench_loss(loss_rows)
    print(f"{gpu}, torch {torch.__version__}, triton {triton.__version__}, {date.today()}")
    print(f"\ndevice-to-device copy: {copy_gbs:.0f} GB/s\n\nhyper_gather forward (bf16), GB/s and share of the copy:")
    print(
        table(
            gather_rows,
            [
                "shape",
                "MB",
                "triton_GBs",
                "torch_GBs",
                "compiled_GBs",
                "triton_of_copy",
                "triton_ms",
                "torch_ms",
                "compiled_ms",
                "backward_triton_ms",
                "backward_torch_ms",
            ],
        )
    )
    print("\nhyper_cross_entropy forward + backward (bf16): time (ms) and peak memory above the inputs (MB):")
    print(
        table(
            loss_rows,
            [
                "shape",
                "zip2zip_ms",
                "naive_ms",
                "compiled_ms",
                "direct_ms",
                "zip2zip_again_ms",
                "time_ratio",
                "zip2zip_MB",
                "naive_MB",
                "compiled_MB",
                "memory_ratio",
            ],
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "gpu": gpu,
                    "date": str(date.today()),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "copy_GBs": copy_gbs,
                    "gather": gather_rows,
                    "loss": loss_rows,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
