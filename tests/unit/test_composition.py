"""What a benchmark's score is made of (gift.evaluate.composition): unanswered, capped, fallback-only answers and
exact-match failures of format and of content."""
from __future__ import annotations

import pytest

from gift.benchmarks import Problem
from gift.evaluate import composition, verdict


def problem(kind: str, reference: str) -> Problem:
    return Problem(id="0", question="q", reference=reference, kind=kind, raw="q")


def test_math_answers_split_into_stated_fallback_and_none():
    p = problem("math", "7")
    completions = ["So the answer is 7.", "10 + 17 = 27. 27 - 20 = 7", "I do not know", "So the answer is 8."]
    verdicts = [verdict(p, c) for c in completions]
    assert [v[1:] for v in verdicts] == [(True, True), (True, False), (False, False), (False, True)]
    made = composition([p] * 4, completions, verdicts, [False, True, True, False])
    assert made == {"unanswered": 0.25, "capped": 0.5, "fallback_only": 0.25, "accuracy_without_fallback": 0.25}
    assert composition([p] * 4, completions, verdicts, None)["capped"] is None  # not recorded: unknown, not 0


def test_exact_failures_are_format_when_the_reference_is_inside():
    p = problem("exact", "star dog bell")
    completions = ["star dog bell", "So the answer is star dog bell.", "bell dog star", "Star dog bell."]
    verdicts = [verdict(p, c) for c in completions]
    made = composition([p] * 4, completions, verdicts, None)
    assert made["format_failures"] == 0.25 and made["content_failures"] == 0.25  # the style leaking vs wrong words
    assert made["accuracy_without_fallback"] == 0.5


def test_choice_reads_no_fallback():
    p = problem("choice", "B")
    made = composition([p] * 2, ["The answer is B.", "Hmm."], [verdict(p, "The answer is B."), verdict(p, "Hmm.")],
                       None)
    assert made["unanswered"] == pytest.approx(0.5) and made["fallback_only"] == 0.0
