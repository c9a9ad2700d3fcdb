"""The screenshot of the HTML view in docs/tokenizer.md: the demo's chat prompt (zip2zip.demo)
through SmolLM2's tokenizer (K=2048, S=4), rendered by ``zip2zip show --html``'s page and
photographed by headless Chromium.

    python scripts/screenshot_show.py docs/images/show-demo.png
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import zip2zip as z
from zip2zip.demo import DEMO_MESSAGES
from zip2zip.render import render_html
from zip2zip.sources import load_smollm2_tokenizer

out = Path(sys.argv[1]).resolve()
tok = z.Zip2ZipTokenizer.from_base(load_smollm2_tokenizer())
codes = tok.apply_chat_template(DEMO_MESSAGES, add_generation_prompt=True)
with tempfile.TemporaryDirectory() as folder:
    page = Path(folder) / "demo.html"
    page.write_text(render_html(tok, codes, title="zip2zip show: the demo's chat prompt"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=900,520"]
    subprocess.run(["chromium", *flags, f"--screenshot={out}", page.as_uri()], check=True, capture_output=True)
print(f"wrote {out}")
