"""scripts/results_table.py's across-variants row: the baseline is the one dev would ship among the non-GIFT methods
(keeping the instruct model when none beats it on dev), and GIFT's differences against it are paired."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gift.metrics import paired_difference
from tests.conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "results_table.py"


def selection(dev: dict[str, tuple[float, float, float]]) -> dict:
    """method -> (dev task, dev retention, chosen λ)."""
    return {"instruct": {"task": 0.6, "retention": 0.9}, "floor": 0.88,
            "methods": {m: {"chosen": {"scale": lam}, "dev": {"task": t, "retention": r}}
                        for m, (t, r, lam) in dev.items()}}


def scores(rng: np.random.Generator, n: int) -> dict:
    """n seeds' per-problem 0/1 scores of a method's test and retention runs, as results.json's per_seed holds them."""
    return {str(s): {b: {"metrics": {m: {"scores": rng.integers(0, 2, 30).astype(float).tolist()}
                                     for m in ("accuracy", "avg@16")}} for b in ("task", "retention")}
            for s in range(n)}


def test_the_best_baseline_ignores_gift_rows_and_keeps_instruct_when_nothing_beats_it():
    rt = load_script(SCRIPT)
    sel = selection({"gift": (0.9, 0.9, 0.5), "shadow-ft": (0.7, 0.89, 0.25), "filter": (0.65, 0.9, 0.25),
                     "instruct-sft": (0.6, 0.9, 0.0)})
    assert rt.best_baseline(sel) == "shadow-ft"
    sel = selection({"gift-baset": (0.8, 0.9, 0.25), "shadow-ft": (0.6, 0.9, 0.0), "rho": (0.6, 0.9, 0.0)})
    assert rt.best_baseline(sel) == "instruct"


def test_gift_against_the_best_baseline_is_the_paired_difference(tmp_path):
    rt = load_script(SCRIPT)
    rng = np.random.default_rng(0)
    per_seed = {"instruct": scores(rng, 1), "shadow-ft": scores(rng, 3), "gift": scores(rng, 3)}
    res = {"per_seed": per_seed, "points": {"shadow-ft": {"scale": 0.25}, "gift": {"gamma": 0.5, "scale": 0.5}},
           "selection": selection({"gift": (0.9, 0.9, 0.5), "shadow-ft": (0.7, 0.9, 0.25)})}
    (tmp_path / "results.json").write_text(json.dumps(res))
    row = rt.versus_baseline([tmp_path]).splitlines()[-1]
    want = paired_difference(*[[np.asarray(s["task"]["metrics"]["accuracy"]["scores"]) for s in per_seed[m].values()]
                               for m in ("gift", "shadow-ft")])
    assert "shadow-ft (λ 0.25)" in row and rt.pct(want) in row and row.count("–") == 2  # no GIFT-BaseT, no published


def test_gift_against_a_named_baseline_is_paired_with_that_one_whatever_dev_would_ship(tmp_path):
    rt = load_script(SCRIPT)
    rng = np.random.default_rng(1)
    per_seed = {m: scores(rng, 3) for m in ("rho", "shadow-ft", "gift")}
    res = {"per_seed": per_seed, "points": {"shadow-ft": {"scale": 1.0}, "rho": {"ratio": 0.6, "scale": 1.0},
                                            "gift": {"gamma": 0.5, "scale": 1.0}},
           "selection": selection({"gift": (0.9, 0.9, 1.0), "rho": (0.8, 0.9, 1.0), "shadow-ft": (0.7, 0.9, 1.0)})}
    (tmp_path / "results.json").write_text(json.dumps(res))
    assert "| rho (" in rt.versus_baseline([tmp_path]).splitlines()[-1]
    row = rt.versus_baseline([tmp_path], "shadow-ft").splitlines()[-1]
    want = paired_difference(*[[np.asarray(s["retention"]["metrics"]["accuracy"]["scores"]) for s in per_seed[m].values()]
                               for m in ("gift", "shadow-ft")])
    assert "shadow-ft (λ 1)" in row and row.endswith(f"{rt.pct(want)} | – | – |")
