"""The report of ``zip2zip eval`` as a Markdown table and as an SVG chart (no plotting library)."""

from __future__ import annotations

from typing import Any


def format_report(report: dict[str, Any]) -> str:
    masked = bool(report["domains"]) and all("bpb_ratio_canonical" in r for r in report["domains"].values())
    extra = " ratio, canonical mask |" if masked else ""
    lines = [
        "| domain | base tokens | codes | input compression | base bits/byte | zip2zip bits/byte | ratio |"
        + extra
        + " KwKwK left out |",
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if masked else "") + "---:|",
    ]
    for domain, r in report["domains"].items():
        canonical = f" {r['bpb_ratio_canonical']:.3f} |" if masked else ""
        lines.append(
            f"| {domain} | {int(r['tokens']):,} | {int(r['codes']):,} | {r['input_compression']:.3f} | "
            f"{r['base_bpb']:.4f} | {r['zip_bpb']:.4f} | {r['bpb_ratio']:.3f} |{canonical} {int(r['kwkwk'])} |"
        )
    if all("hyper_share" in r for r in report["domains"].values()) and report["domains"]:
        lines += [
            "",
            "| domain | hypertoken targets | share | zip2zip / base nats on them | base-id targets | "
            "zip2zip / base nats on them |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for domain, r in report["domains"].items():
            lines.append(
                f"| {domain} | {int(r['hyper_targets']):,} | {r['hyper_share']:.1%} | {r['hyper_nats_ratio']:.3f} | "
                f"{int(r['base_targets']):,} | {r['base_nats_ratio']:.3f} |"
            )
    if report["generation"]:
        lines += [
            "",
            "| prompts | generated codes | base tokens | base tokens per code | tokenizer on the answers |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, g in report["generation"].items():
            lines.append(
                f"| {name} | {g['codes']} | {g['base_tokens']} | {g['tokens_per_code']:.3f} | "
                f"{g['canonical_tokens_per_code']:.3f} |"
            )
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def plot_svg(report: dict[str, Any], title: str = "zip2zip eval") -> str:
    """An SVG bar chart of a report: per domain, base and zip2zip bits per byte side by side
    (left axis) and the input compression written above each pair."""
    domains = list(report["domains"].items())
    width, height, left, bottom, top = 120 + 110 * max(len(domains), 1), 360, 60, 60, 50
    plot_height = height - bottom - top
    largest = max([max(r["base_bpb"], r["zip_bpb"]) for _, r in domains] + [1e-9])
    scale = plot_height / (largest * 1.15)
    colours = {"base": "#7f8c8d", "zip2zip": "#2e86de"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12">',
        f"<title>{_escape(title)}</title>",
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="14">{_escape(title)}: bits per byte '
        f"by domain (lower is better)</text>",
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" stroke="black"/>',
    ]
    for tick in range(5):
        value = largest * 1.15 * tick / 4
        y = height - bottom - value * scale
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#ddd"/>')
    for i, (domain, row) in enumerate(domains):
        x = left + 20 + 110 * i
        for j, (name, key) in enumerate((("base", "base_bpb"), ("zip2zip", "zip_bpb"))):
            bar = row[key] * scale
            parts.append(
                f'<rect class="{name}" x="{x + 36 * j}" y="{height - bottom - bar:.1f}" width="32" '
                f'height="{bar:.1f}" fill="{colours[name]}"><title>{_escape(domain)} {name}: '
                f"{row[key]:.4f} bits/byte</title></rect>"
            )
            parts.append(
                f'<text x="{x + 36 * j + 16}" y="{height - bottom - bar - 4:.1f}" text-anchor="middle" '
                f'font-size="10">{row[key]:.3f}</text>'
            )
        parts.append(f'<text x="{x + 34}" y="{height - bottom + 16}" text-anchor="middle">{_escape(domain)}</text>')
        parts.append(
            f'<text x="{x + 34}" y="{height - bottom + 32}" text-anchor="middle" font-size="10">'
            f"{row['input_compression']:.2f} tokens/code</text>"
        )
    for j, name in enumerate(colours):
        parts.append(f'<rect x="{width - 200 + 90 * j}" y="30" width="12" height="12" fill="{colours[name]}"/>')
        parts.append(f'<text x="{width - 184 + 90 * j}" y="41">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
