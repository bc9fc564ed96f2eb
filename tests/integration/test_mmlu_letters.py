"""Multiple-choice letters as a real model writes them: SmolLM2-135M-Instruct's greedy completions to the first 500
MMLU-STEM questions (tests/fixtures/mmlu_stem_smollm2_500.json, made once by the command it records), read by gift and
by the Qwen2.5-Math evaluation's rule, with every disagreement listed and judged in
tests/fixtures/mmlu_letter_disagreements.json. No model runs here; ../shared/data supplies the questions."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gift.benchmarks import load_benchmark
from gift.grading import extract_choice, options_of
from tests.conftest import SHARED_DATA

FIXTURES = Path(__file__).parents[1] / "fixtures"
pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mmlu_stem_test.jsonl").exists(), reason="../shared/data not present")


def qwen25_math_letter(completion: str) -> str | None:
    """The Qwen2.5-Math evaluation's multiple-choice rule (parser.py, its mmlu branch): the last stand-alone capital
    A-E of the upper-cased completion. Written here as the reference to compare with, not used by gift."""
    found = re.findall(r"\b(A|B|C|D|E)\b", completion.upper())
    return found[-1] if found else None


@pytest.fixture(scope="module")
def readings():
    responses = json.loads((FIXTURES / "mmlu_stem_smollm2_500.json").read_text())["responses"]
    problems = {p.id: p for p in load_benchmark("mmlu_stem", limit=500).problems}
    return [(r["id"], r["response"], problems[r["id"]].reference,
             extract_choice(r["response"], options_of(problems[r["id"]].question)), qwen25_math_letter(r["response"]))
            for r in responses]


def test_gift_reads_a_letter_from_most_completions(readings):
    """Before this rule gift read a letter from 26.0% of these completions (130 of 500) and graded 6.6% correct; it
    read 84.4% (19.0% correct) until a letter whose text is another option's ("C. Calmodulin" where Calmodulin is B)
    counted as that letter (55 completions; issue 29): such a completion now reads as none."""
    read = sum(g is not None for _, _, _, g, _ in readings)
    assert len(readings) == 500 and read == 367  # 73.4%; the rest list several options, name none, or disagree
    assert sum(g == ref for _, _, ref, g, _ in readings) == 83  # 16.6% correct (Qwen2.5-Math's rule: 23.6%)


def test_every_disagreement_with_the_qwen25_math_rule_is_judged(readings):
    judged = {j["id"]: j for j in json.loads((FIXTURES / "mmlu_letter_disagreements.json").read_text())}
    found = {i: (g, q) for i, _, _, g, q in readings if g != q}
    assert found.keys() == judged.keys() and len(found) == 162  # 67.6% agreement
    for i, (g, q) in found.items():
        assert (judged[i]["gift"], judged[i]["qwen"]) == (g, q)
    why = [j["why"] for j in judged.values()]
    assert sum(w.startswith("gift: none (the completion lists several options") for w in why) == 75  # never a guess
    assert all(w and "UNJUDGED" not in w for w in why)
