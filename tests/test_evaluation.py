"""`zip2zip eval` and its parts on the CPU with a tiny model: bits per byte, generation compression,
the plot, and the checked answers."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import numpy as np
import pytest
import torch

import zip2zip as z
from tiny_models import base_answer, tiny, train_args
from zip2zip.cli import main
from zip2zip.modeling import Zip2ZipForCausalLM


def test_eval_without_hypertokens_scores_exactly_like_the_base(workspace, smollm2_tokenizer):
    """With K=0 every code is a base token: the strict zip2zip score must equal the base's."""
    from zip2zip.evaluation.scoring import evaluate

    tokenizer = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=0)
    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=smollm2_tokenizer.vocab_size), tokenizer).eval()
    report = evaluate(model, tokenizer, [str(workspace / "held" / "code" / "held.txt")], window=256, max_windows=3)
    row = report["domains"]["code"]
    assert row["codes"] == row["tokens"] and row["input_compression"] == 1.0
    assert row["zip_bytes"] == row["base_bytes"] and row["kwkwk"] == 0
    assert row["zip_bpb"] == pytest.approx(row["base_bpb"], rel=1e-5)
    assert row["hyper_targets"] == 0 and row["base_targets"] == row["codes"] - 3  # every code but each window's first
    assert row["base_nats_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert row["zip_nats_canonical"] == pytest.approx(row["zip_nats"], rel=1e-9)  # no entries: nothing to mask


def test_where_the_bits_go_splits_both_models_nats_by_the_kind_of_code(workspace, tok):
    """The split adds up: the zip2zip model's nats over the hypertoken and base-id targets are its
    total, and the base model's nats for the same tokens are its total over the scored tokens."""
    from zip2zip.evaluation.scoring import score_text

    model = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    text = "#" + "def add(a, b):\n    return a + b\n" * 12  # a first code of one token, repeats after it
    totals = score_text(model, tok, text, window=512)
    assert totals["kwkwk"] == 0 and totals["hyper_targets"] > 0 and totals["base_targets"] > 0
    assert totals["hyper_targets"] + totals["base_targets"] == totals["codes"] - 1
    assert totals["zip_nats_hyper"] + totals["zip_nats_base"] == pytest.approx(totals["zip_nats"], rel=1e-9)
    assert totals["base_nats_hyper"] + totals["base_nats_base"] == pytest.approx(totals["base_nats"], rel=1e-9)
    assert totals["zip_nats_canonical"] <= totals["zip_nats"] + 1e-3


class _Copying(torch.nn.Module):
    """A zip2zip model with a large bonus on the base id that followed the last earlier
    occurrence of each position's last base id: a copying guess that knows nothing of the
    codebook, so it often names a base id that would extend the code before it."""

    def __init__(self, inner, tok):
        super().__init__()
        self.inner, self.tok, self.has_adapter, self.base = inner, tok, False, inner.base

    def forward(self, **batch):
        out = self.inner(**batch)
        codes = batch["input_ids"][0].tolist()
        for i in range(len(codes)):
            text = self.tok.expand(codes[: i + 1]).tolist()
            earlier = [j for j in range(len(text) - 1) if text[j] == text[-1]]
            if earlier:
                out.logits[0, i, text[earlier[-1] + 1]] += 30.0
        return out


def test_the_canonical_mask_column_takes_back_what_a_model_puts_on_impossible_codes(tok):
    """A copying model puts much of its probability on base ids that canonical encoding cannot
    emit next (the encoder would have read them into the code before): the canonical column
    gives that probability to the possible codes, so it scores many fewer nats; the plain
    column is untouched by it."""
    from zip2zip.evaluation.scoring import score_text

    inner = Zip2ZipForCausalLM.from_base(tiny("llama", vocab=tok.vocab_size), tok).eval()
    text = "#" + "def add(a, b):\n    return a + b\n" * 12
    plain = score_text(inner, tok, text, window=512)
    copying = score_text(_Copying(inner, tok), tok, text, window=512)
    assert copying["zip_nats"] - copying["zip_nats_canonical"] > 5.0
    assert plain["zip_nats"] - plain["zip_nats_canonical"] < 0.01  # random guesses rarely name those ids


def test_eval_command_reports_domains_and_generation(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(workspace, out, "--steps", "2")) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--data",
                str(workspace / "held" / "code" / "held.txt"),
                "--window",
                "128",
                "--max-windows",
                "2",
                "--max-new-codes",
                "4",
                "--json",
                str(tmp_path / "report.json"),
                "--plot",
                str(tmp_path / "report.svg"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| code |" in printed and "| chat |" in printed and "base tokens per code" in printed
    assert "zip2zip / base nats on them" in printed and "ratio, canonical mask" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    row = report["domains"]["code"]
    assert row["input_compression"] > 1.0 and np.isfinite(row["zip_bpb"]) and np.isfinite(row["base_bpb"])
    assert all(len(g["answers"]) == 4 and g["codes"] > 0 for g in report["generation"].values())
    for g in report["generation"].values():
        assert sum(a["canonical_codes"] for a in g["answers"]) == g["canonical_codes"]
        assert all(1 <= a["canonical_codes"] <= a["base_tokens"] for a in g["answers"] if a["base_tokens"])
        assert g["canonical_tokens_per_code"] == pytest.approx(g["base_tokens"] / g["canonical_codes"])
    svg = ElementTree.parse(tmp_path / "report.svg").getroot()
    bars = {r.get("class"): r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.get("class")}
    assert set(bars) == {"base", "zip2zip"} and f"{row['zip_bpb']:.4f}" in "".join(bars["zip2zip"].itertext())
    assert main(["eval", "--model", str(out), "--data", str(tmp_path / "missing.txt")]) == 2
    assert (
        main(
            [
                "eval",
                "--model",
                str(out),
                "--data",
                str(workspace / "held" / "code" / "held.txt"),
                "--plot",
                str(tmp_path / "no" / "such" / "folder.svg"),
            ]
        )
        == 2
    )


def test_canonical_codes_count_the_answers_share_of_the_encoding(tok):
    """The reference for generation compression: codes of the canonical encoding that end in the
    answer. From an empty prompt it is the whole encoding; after a prompt that already holds the
    answer's phrases it is fewer, and prompt and answer together never take fewer codes than
    the tokenizer gives the concatenation."""
    from zip2zip.evaluation.scoring import canonical_codes

    rng = np.random.default_rng(3)
    motif = rng.integers(100, 5000, size=5).tolist()
    answer = (motif * 6)[:27]
    assert canonical_codes(tok, [], answer) == len(tok.encode_ids(np.array(answer, dtype=np.uint32)).codes)
    prompt = motif * 8
    after = canonical_codes(tok, prompt, answer)
    assert 1 <= after < canonical_codes(tok, [], answer)
    whole = len(tok.encode_ids(np.array(prompt + answer, dtype=np.uint32)).codes)
    in_prompt = len(tok.encode_ids(np.array(prompt, dtype=np.uint32)).codes)
    assert whole - in_prompt <= after <= whole - in_prompt + 1  # one code may span the boundary


def test_eval_plot_draws_each_domain_to_scale():
    from zip2zip.evaluation.report import plot_svg

    report = {
        "domains": {
            "code": {"base_bpb": 0.8, "zip_bpb": 1.2, "input_compression": 1.3},
            "prose & <more>": {"base_bpb": 1.0, "zip_bpb": 1.1, "input_compression": 1.2},
        }
    }
    svg = ElementTree.fromstring(plot_svg(report))
    heights = {}
    for rect in svg.iter("{http://www.w3.org/2000/svg}rect"):
        if rect.get("class"):
            label = "".join(rect.itertext())
            heights[label.split(":")[0]] = float(rect.get("height"))
    assert set(heights) == {"code base", "code zip2zip", "prose & <more> base", "prose & <more> zip2zip"}
    assert heights["code zip2zip"] / heights["code base"] == pytest.approx(1.5, rel=1e-2)
    assert heights["prose & <more> zip2zip"] / heights["code zip2zip"] == pytest.approx(1.1 / 1.2, rel=1e-2)


def test_code_answers_pass_only_when_the_named_function_passes_its_tests():
    from zip2zip.evaluation.answers import CodeTask, extract_function, run_code_check

    task = CodeTask("…", "double", "assert double(2) == 4\nassert double(-1) == -2")
    right = "Here it is:\n```python\ndef double(x):\n    return 2 * x\n```\nExample: double(3) gives 6."
    assert run_code_check(right, task)
    assert run_code_check(
        "```py\nimport math\n\ndef double(x):\n    return x + x\n", task
    )  # cut off before the fence ends
    assert not run_code_check(right.replace("2 * x", "x * x"), task)  # wrong
    assert not run_code_check("def double(x):\n    return 2 * x", task)  # no fenced block
    assert not run_code_check("```python\ndef triple(x):\n    return 3 * x\n```", task)  # another function
    assert not run_code_check("```python\ndef double(x):\n    return input()\n```", task)  # no stdin to read
    assert not run_code_check("```python\ndef double(x):\n    while True:\n        pass\n```", task, timeout=2)
    # The first block that defines the function counts, not an example block before it.
    two = "```python\nprint(double(2))\n```\n```python\ndef double(x):\n    return 2 * x\n```"
    assert extract_function(two, "double") == "def double(x):\n    return 2 * x\n"


def test_fact_answers_pass_when_they_name_an_expected_word():
    from zip2zip.evaluation.answers import FACT_QUESTIONS, FactQuestion, fact_check

    question = FactQuestion("How many legs does a spider have?", ("eight", "8"))
    assert fact_check("A spider has EIGHT legs.", question) and fact_check("8 legs", question)
    assert not fact_check("Spiders have six legs.", question)
    assert len({q.prompt for q in FACT_QUESTIONS}) == len(FACT_QUESTIONS)


def test_checked_answers_of_both_models(workspace, tok):
    """check_answers asks both models; the base answer is what the base model generates on its
    own, and each verdict is the check applied to the answer reported."""
    from zip2zip.evaluation.answers import (
        CODE_TASKS,
        FACT_QUESTIONS,
        check_answers,
        fact_check,
        format_answers,
        run_code_check,
        zip2zip_answer,
    )

    model = Zip2ZipForCausalLM.from_base(str(workspace / "base"), tok).add_lora(r=4).eval()
    report = check_answers(model, tok, code_tasks=CODE_TASKS[:1], questions=FACT_QUESTIONS[:2], max_new_codes=16)
    assert report["code"]["questions"] == 1 and report["facts"]["questions"] == 2
    expected = base_answer(model, tok, CODE_TASKS[0].prompt, 16)
    assert report["code"]["answers"][0]["base"] == expected
    answer = report["code"]["answers"][0]
    assert answer["base_passes"] == run_code_check(answer["base"], CODE_TASKS[0])
    assert answer["zip2zip_passes"] == run_code_check(answer["zip2zip"], CODE_TASKS[0])
    for row, question in zip(report["facts"]["answers"], FACT_QUESTIONS):
        assert row["zip2zip_passes"] == fact_check(row["zip2zip"], question) and row["zip2zip"] != ""
    assert report["facts"]["zip2zip_passed"] == sum(r["zip2zip_passes"] for r in report["facts"]["answers"])
    # the valve's answer is the one generate() writes with base ids only and the marginal's token
    valve = zip2zip_answer(model, tok, CODE_TASKS[0].prompt, 16, output_hypertokens=False, marginal_first_token=True)
    assert answer["valve_marginal"] == valve and answer["valve_marginal_passes"] == run_code_check(valve, CODE_TASKS[0])
    assert report["facts"]["valve_marginal_passed"] == sum(
        r["valve_marginal_passes"] for r in report["facts"]["answers"]
    )
    table = format_answers(report)
    assert "| facts | 2 |" in table and table.splitlines()[-1].endswith(
        f"| {report['facts']['valve_marginal_passed']} |"
    )
