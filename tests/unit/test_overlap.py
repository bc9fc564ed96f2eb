"""scripts/overlap.py: the paired difference without the test problems that also appear in the training file equals
gift.metrics.paired_difference on the kept problems, and the count of overlapping problems is right."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gift.metrics import paired_difference
from tests.conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "overlap.py"


def test_overlap_drops_exactly_the_problems_seen_in_training(tmp_path, monkeypatch):
    overlap = load_script(SCRIPT)
    rng = np.random.default_rng(0)
    test = [f"q{i}" for i in range(40)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in ["q3", "q17", "x", "q39"]))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in test))
    task = {"name": "task", "file": str(tmp_path / "test.jsonl")}
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump({"train_data": str(tmp_path / "train.jsonl"),
                                                              "benchmarks": [task]}))

    def scores(n_seeds: int) -> dict:
        return {str(s): {"task": {"metrics": {m: {"scores": rng.integers(0, 2, 40).astype(float).tolist()}
                                              for m in ("accuracy", "avg@16")}}} for s in range(n_seeds)}

    per_seed = {"instruct": scores(1), "gift": scores(3)}
    (tmp_path / "results.json").write_text(json.dumps({"per_seed": per_seed}))
    monkeypatch.setattr(sys, "argv", ["overlap.py", str(tmp_path), "--out", str(tmp_path / "o.json")])
    assert overlap.main() == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["in_train"] == 3 and out["test_problems"] == 40
    keep = np.array([q not in {"q3", "q17", "q39"} for q in test])
    sides = [[np.asarray(s["task"]["metrics"]["accuracy"]["scores"])[keep] for s in per_seed[m].values()]
             for m in ("gift", "instruct")]
    assert out["methods"]["gift"]["accuracy"]["without_overlap"]["value"] == pytest.approx(
        paired_difference(*sides)["value"])
    assert out["methods"]["gift"]["accuracy"]["without_overlap"] != out["methods"]["gift"]["accuracy"]["all"]
