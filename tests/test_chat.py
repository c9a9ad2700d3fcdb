"""``zip2zip chat`` and ``zip2zip generate`` (`zip2zip.cli.chat`, `zip2zip.generation.chat`) on a
tiny saved model: turns reuse the codes of the earlier ones, and the printed text is the answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import torch

from zip2zip.cli import main
from zip2zip.generation.chat import ChatSession

FIGURES = re.compile(r"^\[(\d+) codes, (\d+) base tokens, .* prompt (\d+) codes, (\d+) new\]$", re.MULTILINE)


def test_a_second_turn_reads_the_first_turns_codes(saved):
    folder, tok, model = saved
    session = ChatSession(model, tok, max_new_tokens=12)
    pieces: list[tuple[str, bool]] = []
    first = session.ask(
        "def f(x):\n    return x + x\n\ndef g(x):\n    return x + x + 1", on_piece=lambda t, h: pieces.append((t, h))
    )
    assert "".join(text for text, _ in pieces) == first.text
    assert any(hyper for _, hyper in pieces) == any(c >= tok.vocab_size for c in first.codes)
    after_first = first.prompt_codes + first.codes
    second = session.ask("and h?")
    # The second prompt is the first turn's codes as they were (the answer's too), then the new turn.
    assert second.prompt_codes[: len(after_first)] == after_first
    assert second.new_prompt_codes == len(second.prompt_codes) - len(after_first) > 0
    text = tok.decode(second.prompt_codes)
    rendered = tok.apply_chat_template(session.messages[:-1], tokenize=False, add_generation_prompt=True)
    assert text == rendered  # what the model read is the whole conversation, rendered
    # The answer is what generate() writes for those codes.
    ids = torch.tensor([second.prompt_codes])
    with torch.no_grad():
        alone = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert alone[0, ids.shape[1] :].tolist() == second.codes
    state = tok.state_after(second.prompt_codes)
    assert second.text == tok.decode(second.codes, state=state, skip_special_tokens=True)
    assert second.base_tokens == len(tok.expand(second.codes, state))


def test_chat_command_through_its_stdin(saved):
    """Two turns typed into ``zip2zip chat`` (a pipe for stdin), then /exit."""
    folder = saved[0]
    result = subprocess.run(
        [sys.executable, "-m", "zip2zip", "chat", "--model", str(folder), "--max-new-tokens", "8", "--highlight"],
        input="def f(x): return x + x + x\nand g?\n/exit\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    turns = FIGURES.findall(result.stdout)
    assert len(turns) == 2, result.stdout
    (codes1, _, prompt1, new1), (_, _, prompt2, new2) = [tuple(map(int, t)) for t in turns]
    assert prompt1 == new1 and prompt2 - new2 == prompt1 + codes1  # turn 2 kept turn 1's codes
    assert result.stdout.count("zip2zip> ") == 2
    assert "\x1b[48;5;153m" in result.stdout  # --highlight: the tiny model writes hypertokens


def test_generate_command_prints_the_answers_as_json(saved, capsys):
    folder, tok, model = saved
    prompts = ["def f(x):\n    return x + x", "hello hello hello"]
    assert main(["generate", "--model", str(folder), "--max-new-tokens", "8", "--json", *prompts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [ChatSession(model, tok, max_new_tokens=8).ask(p).text for p in prompts]
    assert [r["prompt"] for r in rows] == prompts and [r["text"] for r in rows] == expected
    assert all(r["codes"] <= 8 and r["prompt_codes"] == r["new_prompt_codes"] for r in rows)
    assert main(["generate", "--model", str(folder), "--raw", "--max-new-tokens", "4", "def f(x):"]) == 0
    raw = ChatSession(model, tok, max_new_tokens=4).complete("def f(x):").text
    assert capsys.readouterr().out == raw + "\n"
    # --valve --marginal: the answers generate() writes with base ids only and the marginal's token
    assert (
        main(["generate", "--model", str(folder), "--max-new-tokens", "8", "--json", "--valve", "--marginal", *prompts])
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    options = {"output_hypertokens": False, "marginal_first_token": True}
    valve = [ChatSession(model, tok, max_new_tokens=8, generate_kwargs=options).ask(p) for p in prompts]
    assert [r["text"] for r in rows] == [t.text for t in valve]
    assert all(r["base_tokens"] == r["codes"] for r in rows)  # base ids only
    # --min-share S: generate(hypertoken_min_share=S)
    assert (
        main(["generate", "--model", str(folder), "--max-new-tokens", "8", "--json", "--min-share", "0.35", *prompts])
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    options = {"hypertoken_min_share": 0.35}
    shared = [ChatSession(model, tok, max_new_tokens=8, generate_kwargs=options).ask(p).text for p in prompts]
    assert [r["text"] for r in rows] == shared


def test_chat_and_generate_refuse_bad_settings(saved, capsys):
    folder = saved[0]
    assert main(["generate", "--model", str(folder), "--max-new-tokens", "0", "x"]) == 2
    assert "--max-new-tokens" in capsys.readouterr().err
    assert main(["generate", "--model", str(folder / "missing"), "x"]) == 2
    assert main(["chat", "--model", str(folder), "--top-p", "0"]) == 2
    assert main(["generate", "--model", str(folder), "--min-share", "1.5", "x"]) == 2
    assert "--min-share" in capsys.readouterr().err
