"""The HTML view (``zip2zip show --html``, `zip2zip.render.render_html`) in headless Chromium: the
page renders, every hypertoken is a highlighted span whose text is the phrase, the page's text is
the decoded text, and nothing is printed to the console."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

import browser
from zip2zip.cli import main
from zip2zip.demo import DEMO_MESSAGES
from zip2zip.render import render_html

pytestmark = pytest.mark.skipif(
    browser.chromium() is None, reason="needs Debian's chromium (scripts/test.sh installs it)"
)

# The four highlight colours of the page's CSS (.c0 to .c3).
COLOURS = [(0xCF, 0xE8, 0xFF), (0xD8, 0xF5, 0xC8), (0xFF, 0xE2, 0xC6), (0xE6, 0xDC, 0xFF)]


class Spans(HTMLParser):
    """The text of the page's ``div.text`` and of each ``span.h`` inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.text, self.spans, self._depth, self._span = "", [], 0, None

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div" and "text" in classes:
            self._depth = 1
        elif self._depth and tag == "span" and "h" in classes:
            self._span = ""

    def handle_endtag(self, tag):
        if tag == "span" and self._span is not None:
            self.spans.append(self._span)
            self._span = None
        elif tag == "div" and self._depth:
            self._depth = 0

    def handle_data(self, data):
        if self._depth:
            self.text += data
            if self._span is not None:
                self._span += data


def test_the_demo_page_renders_with_its_hypertokens_highlighted(tok, tmp_path):
    codes = tok.apply_chat_template(DEMO_MESSAGES, add_generation_prompt=True)
    page = tmp_path / "demo.html"
    page.write_text(render_html(tok, codes, title="zip2zip: the demo's chat prompt"), encoding="utf-8")
    dom, console = browser.dump_dom(page)
    assert console == []
    spans = Spans()
    spans.feed(dom)
    hypertokens = [code for code in codes if code >= tok.vocab_size]
    assert len(spans.spans) == len(hypertokens) >= 4  # enough for every highlight colour
    assert spans.text == tok.decode(codes)  # the ↵ marks are CSS, not text: copying gives the text
    state = tok.state_after(codes)
    phrases = [tok.base.decode(state.phrase(code).tolist()) for code in hypertokens]
    assert [s for s in spans.spans if s] == [p for p in phrases if p]  # each span reads as its phrase
    pixels = browser.screenshot(page, tmp_path / "demo.png")
    flat = pixels.reshape(-1, 3)
    white = (flat == 255).all(1).mean()
    assert white > 0.5  # a page, not a blank or an error screen
    shaded = [int((flat == colour).all(1).sum()) for colour in COLOURS]
    assert all(count > 200 for count in shaded), shaded  # every highlight colour is drawn


def test_the_console_check_catches_an_error(tmp_path):
    """The console check above can fail: a page that logs an error is caught."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><script>console.error("broken")</script>ok</body></html>')
    _, console = browser.dump_dom(page)
    assert len(console) == 1 and "broken" in console[0]


def test_show_html_page_of_a_file(tmp_path, smollm2_tokenizer, capsys):
    source = tmp_path / "code.py"
    source.write_text("def add(a, b):\n    return a + b\n\ndef add3(a, b, c):\n    return a + b + c\n" * 3)
    page = tmp_path / "code.html"
    assert main(["show", str(source), "--html", str(page)], base_tokenizer=smollm2_tokenizer) == 0
    dom, console = browser.dump_dom(page)
    spans = Spans()
    spans.feed(dom)
    assert console == [] and spans.text == source.read_text() and len(spans.spans) > 10
    assert np.asarray(browser.screenshot(page, tmp_path / "code.png")).shape == (600, 900, 3)
