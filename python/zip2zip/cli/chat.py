"""``zip2zip chat --model DIR``: talk to a model in the terminal, and ``zip2zip generate --model DIR
PROMPT...``: one answer per prompt, for scripts (``--json``: one JSON object per line).

Both use the model's chat template (``generate --raw``: the prompt as it is, no template). The
chat streams each answer as it is written, optionally with hypertokens highlighted, and prints a
line of figures after it; its turns reuse the codes of the earlier ones
(`zip2zip.generation.chat.ChatSession`). ``/reset`` starts a new conversation, ``/exit`` (or the
end of input) ends it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from zip2zip.errors import UsageError

_HIGHLIGHT, _RESET = "\x1b[48;5;153m\x1b[30m", "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser, *, one_shot: bool) -> None:
    """The command line of ``zip2zip chat`` (``one_shot=False``) or ``zip2zip generate``."""
    parser.add_argument("--model", required=True, help="a zip2zip model folder (zip2zip train's output)")
    if one_shot:
        parser.add_argument("prompts", nargs="+", metavar="PROMPT", help="prompts, each answered on its own")
        parser.add_argument("--raw", action="store_true", help="continue the prompt as it is (no chat template)")
        parser.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    else:
        parser.add_argument("--highlight", action="store_true", help="colour the text of generated hypertokens")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="codes per answer at most")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; above 0: sampling")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="for sampling")
    parser.add_argument("--bf16", action="store_true", help="run in bf16")
    parser.add_argument(
        "--valve",
        action="store_true",
        help="write base ids only (hypertokens in the prompt only: output_hypertokens=False), "
        "the marginal's most likely next token",
    )
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="write the codes starting with the marginal's most likely next token (marginal_first_token=True)",
    )
    parser.add_argument(
        "--min-share",
        type=float,
        default=None,
        metavar="S",
        help="write a hypertoken only when it holds at least the share S (0 to 1) of its first token's "
        "probability (hypertoken_min_share=S; turns --marginal on)",
    )


def _session(args: argparse.Namespace) -> Any:
    import torch

    from zip2zip.generation.chat import ChatSession
    from zip2zip.modeling import Zip2ZipForCausalLM
    from zip2zip.tokenizer import Zip2ZipTokenizer

    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UsageError("--temperature must be at least 0 and --top-p in (0, 1]")
    if args.min_share is not None and not 0 <= args.min_share <= 1:
        raise UsageError(f"--min-share must lie in [0, 1], got {args.min_share}")
    tokenizer = Zip2ZipTokenizer.from_pretrained(args.model)
    model: Any = Zip2ZipForCausalLM.from_pretrained(args.model, **({"dtype": torch.bfloat16} if args.bf16 else {}))
    model.eval()
    if torch.cuda.is_available():
        model = model.cuda()
    options: dict[str, Any] = {}
    if args.temperature > 0:
        torch.manual_seed(args.seed)
        options = {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p}
    if args.valve:
        options["output_hypertokens"] = False
    if args.marginal:
        options["marginal_first_token"] = True
    if args.min_share is not None:
        options["hypertoken_min_share"] = args.min_share
    return ChatSession(model, tokenizer, max_new_tokens=args.max_new_tokens, generate_kwargs=options)


class _Printer:
    """Writes an answer as it streams; with ``highlight``, the text of hypertokens coloured."""

    def __init__(self, out: TextIO, highlight: bool) -> None:
        self.out, self.highlight = out, highlight

    def __call__(self, text: str, hypertoken: bool) -> None:
        self.out.write(f"{_HIGHLIGHT}{text}{_RESET}" if self.highlight and hypertoken else text)
        self.out.flush()


def run_chat(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """The chat loop: a line of input per user turn."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    session = _session(args)
    interactive = stdin.isatty()
    printer = _Printer(out, args.highlight)
    out.write("zip2zip chat: /reset starts over, /exit ends\n")
    while True:
        if interactive:
            out.write("you> ")
            out.flush()
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() == "/reset":
            session.reset()
            out.write("(a new conversation)\n")
            continue
        out.write("zip2zip> ")
        turn = session.ask(text, on_piece=printer)
        out.write("\n" + turn.figures() + "\n")
        out.flush()
    return 0


def run_generate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """One answer per prompt, each from a fresh conversation."""
    out = out or sys.stdout
    session = _session(args)
    for prompt in args.prompts:
        session.reset()
        turn = session.complete(prompt) if args.raw else session.ask(prompt)
        if args.json:
            out.write(json.dumps({"prompt": prompt, **turn.as_dict()}) + "\n")
        else:
            out.write(turn.text + "\n")
    return 0
