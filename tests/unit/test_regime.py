"""The paper-regime task's generator: slips only in training solutions, at the variant's share; references are
always the true answers; the solutions restate steps in words before the instruct model's equations."""
from __future__ import annotations

import json
import random
import re

import pytest

from gift.tiny import world
from gift.tiny.regime import VARIANTS, example, write_task


@pytest.fixture(scope="module")
def people():
    return world.people(random.Random(0), 8)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_slips_are_in_training_rows_only_and_at_the_share(name, people, tmp_path):
    write_task(name, people, tmp_path)
    rows = {s: [json.loads(line) for line in (tmp_path / f"{s}.jsonl").read_text().splitlines()]
            for s in ("train", "dev", "test")}
    share = sum(r["slipped"] for r in rows["train"]) / len(rows["train"])
    assert share == pytest.approx(VARIANTS[name].wrong, abs=0.03)
    assert not any(r["slipped"] for s in ("dev", "test") for r in rows[s])
    for r in rows["train"] + rows["test"]:
        stated = re.search(r"The answer is (\d+)\.$", r["answer"]).group(1)
        assert (stated == r["reference"]) == (not r["slipped"])
    one_step = sum("then gives away" not in r["question"] for r in rows["test"]) / len(rows["test"])
    assert one_step == pytest.approx(VARIANTS[name].one_step, abs=0.08)


def test_a_slip_changes_only_the_last_equation(people):
    rng = random.Random(3)
    for _ in range(200):
        r = example(rng, people, VARIANTS["near-style-wrong-50"], train=True)
        equations = re.findall(r"(\d+) ([+-]) (\d+) = (\d+)", r["answer"])
        for k, (a, op, b, value) in enumerate(equations):
            true = int(a) + int(b) if op == "+" else int(a) - int(b)
            assert (int(value) == true) == (k < len(equations) - 1 or not r["slipped"])
        assert r["answer"].split(":")[0].endswith("more") or "gives away" in r["answer"].split(":")[0]
