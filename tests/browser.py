"""Headless Chromium (Debian's ``chromium``) for the tests of the HTML view: the rendered DOM, the
console messages, and screenshots read back as pixels (a small PNG reader: no imaging package)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def chromium() -> str | None:
    """The browser: ``$ZIP2ZIP_CHROMIUM`` or ``chromium`` on the PATH (scripts/test.sh installs it)."""
    return os.environ.get("ZIP2ZIP_CHROMIUM") or shutil.which("chromium")


def run(page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    browser = chromium()
    assert browser is not None
    return subprocess.run(
        [browser, *FLAGS, *flags, page.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=True
    )


def dump_dom(page: Path) -> tuple[str, list[str]]:
    """The DOM after loading ``page``, and the console messages it printed."""
    result = run(page, "--dump-dom")
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return result.stdout, console


def screenshot(page: Path, out: Path, width: int = 900, height: int = 600) -> np.ndarray:
    """A screenshot of ``page`` saved to ``out``, returned as ``[height, width, 3]`` uint8 RGB."""
    run(page, f"--window-size={width},{height}", f"--screenshot={out}")
    return read_png(out)


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG as ``[height, width, 3]`` uint8."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows: list[list[int]] = []
    previous = [0] * stride
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 0:
            current = list(line)
        elif kind == 2:
            current = [(value + up) & 0xFF for value, up in zip(line, previous)]
        else:  # Sub, Average and Paeth depend on the byte to the left: one at a time
            current = [0] * stride
            for i in range(stride):
                left = current[i - channels] if i >= channels else 0
                up = previous[i]
                corner = previous[i - channels] if i >= channels else 0
                if kind == 1:
                    predicted = left
                elif kind == 3:
                    predicted = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    predicted = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                current[i] = (line[i] + predicted) & 0xFF
        rows.append(current)
        previous = current
    return np.array(rows, dtype=np.uint8).reshape(height, width, channels)[:, :, :3]
