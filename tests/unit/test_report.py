"""The verdict and report tables of a run with a `select:` block: each method at its dev-chosen point with paired
intervals, the recommendation, and the dev frontier drawn at each method's chosen knob."""
from __future__ import annotations

import pytest

from gift.errors import GiftError
from gift.experiment import RunConfig
from gift.report import dev_frontier, selection_table, settings_text, verdict


def entry(value: float) -> dict:
    return {"accuracy": {"value": value, "ci": [value - 0.05, value + 0.05], "seeds": [value]}}


def diff(value: float, half: float) -> dict:
    return {"accuracy": {"value": value, "lo": value - half, "hi": value + half, "se": half / 2, "df": 9, "mdd": half}}


def summary(recommended: str) -> dict:
    res = lambda task, kept: {"math": entry(task), "ret": entry(kept)}  # noqa: E731
    point = {"task": 0.5, "retention": 0.9}
    selection = {"floor": 0.88, "seeds": [0, 1, 2], "instruct": {"task": 0.40, "retention": 0.90},
                 "methods": {"shadow-ft": {"chosen": {"scale": 0.25}, "dev": point,
                                           "points": [{"scale": 0.0, **point}, {"scale": 0.25, **point},
                                                      {"scale": 1.0, "task": 0.6, "retention": 0.5}]},
                             "gift": {"chosen": {"gamma": 0.5, "scale": 1.0}, "dev": point,
                                      "points": [{"scale": 0.0, **point}, {"gamma": 0.5, "scale": 1.0, **point},
                                                 {"gamma": 1.0, "scale": 1.0, **point}]}},
                 "recommendation": {"method": recommended, "scale": 0.25}}
    return {"roles": {"math": "task", "ret": "retention"}, "selection": selection,
            "methods": {"instruct": res(0.40, 0.90), "shadow-ft": res(0.50, 0.88), "gift": res(0.45, 0.9)},
            "points": {"shadow-ft": {"scale": 0.25}, "gift": {"gamma": 0.5, "scale": 1.0}},
            "paired": {"shadow-ft": {"instruct": {"math": diff(0.10, 0.04), "ret": diff(-0.02, 0.01)}},
                       "gift": {"instruct": {"math": diff(0.05, 0.06), "ret": diff(0.0, 0.01)}}},
            "recommendation": selection["recommendation"]}


def test_verdict_names_each_point_its_paired_interval_and_what_to_ship():
    lines = verdict(summary("shadow-ft")).splitlines()
    assert "  shadow-ft       (λ 0.25)  math +10.0 [+6.0, +14.0]; ret -2.0 [-3.0, -1.0]" in lines
    assert "  gift            (γ 0.5, λ 1)  math +5.0 [-1.0, +11.0]; ret +0.0 [-1.0, +1.0]" in lines
    assert lines[-1] == ("Recommendation (chosen on dev, dev retention ≥ 88.0% (instruct 90.0%)): shadow-ft at λ 0.25; "
                         "on test it beats the instruct model on the task (+10.0 [+6.0, +14.0] points, paired 95%).")
    gift = verdict(summary("gift")).splitlines()[-1]
    assert "gift at γ 0.5, λ 1; on test it does not beat the instruct model" in gift and "reaches 0" in gift
    assert "keep the instruct model" in verdict(summary("instruct")).splitlines()[-1]
    warned = {"path": "run/models/shadow-ft-s0-x0.25", "dtype": "bfloat16", "seed": 0, "differs": True,
              "rounding_warning": "the cast to bfloat16 keeps only 80.0% of the change in q_proj; save in float32"}
    shipped = verdict({**summary("shadow-ft"), "shipped": warned}).splitlines()[-1]
    assert shipped.startswith("Shipped: run/models/shadow-ft-s0-x0.25 (bfloat16, seed 0); its test figures are the "
                              "served candidate's") and "keeps only 80.0%" in shipped
    clean = verdict({**summary("shadow-ft"), "shipped": {**warned, "differs": False, "rounding_warning": None}})
    assert clean.splitlines()[-1] == "Shipped: run/models/shadow-ft-s0-x0.25 (bfloat16, seed 0)."


def test_selection_table_and_dev_frontier_follow_the_chosen_knob():
    table = selection_table(summary("shadow-ft")["selection"])
    assert "| shadow-ft | λ 0.25 | 50.0 | 90.0 | λ 0.25: 50.0 / 90.0; λ 1: 60.0 / 50.0 |" in table
    assert "Recommended on dev: **shadow-ft** at λ 0.25." in table
    lines = dev_frontier(summary("shadow-ft")["selection"])
    assert lines["gift"] == [(0.0, 0.5, 0.9), (1.0, 0.5, 0.9)]  # γ 0.5's line only
    assert settings_text(None) == "none keeps the floor" and settings_text({"scale": 0.0}) == "λ 0 (keep instruct)"


def test_select_needs_both_dev_roles_and_instruct():
    task = {"name": "math", "file": "m.jsonl", "kind": "math", "role": "task"}
    dev = {"name": "d", "file": "d.jsonl", "role": "dev"}
    kept = {"name": "k", "file": "k.jsonl", "role": "dev-retention"}
    with pytest.raises(GiftError, match="select: needs dev benchmarks of both roles"):
        RunConfig(base="b", instruct="i", train_data="d", benchmarks=[task, dev], select={"scales": [0.5]})
    with pytest.raises(GiftError, match="methods must include instruct"):
        RunConfig(base="b", instruct="i", train_data="d", benchmarks=[task, dev, kept], methods=["gift"],
                  select={"scales": [0.5]})
    with pytest.raises(GiftError, match="select.gamma: needs a non-empty list"):
        RunConfig(base="b", instruct="i", train_data="d", benchmarks=[task, dev, kept], select={"gamma": []})
    with pytest.raises(GiftError, match="role 'test'"):
        RunConfig(base="b", instruct="i", train_data="d", benchmarks=[{**task, "role": "test"}])
    cfg = RunConfig(base="b", instruct="i", train_data="d", benchmarks=[task, dev, kept], select={"scales": [0.5]})
    assert cfg.selection().scales == [0.0, 0.5]  # λ 0, the instruct model, is always a candidate


def test_the_verdict_opens_with_the_preconditions_measured_each_against_its_bound():
    pre = {"P2": 0.0, "P3": 7, "P3_runaway": 0, "P4": {"uniform": 0.66, "gift": 0.49}, "P5": [0.1]}
    met = {"P2": True, "P3": True, "P4": False, "P5": True}
    lines = verdict({**summary("shadow-ft"), "preconditions": {**pre, "met": met}}).splitlines()
    assert lines[0] == ("Preconditions (3 of 4 met; docs/experiments.md; a world that misses one says nothing about "
                        "the paper's claim): P2 re-learning 0.0% of GIFT's step-0 loss (≤ 50%) ✓; P3 0 runaway(s) "
                        "of 7 reversal(s) (none) ✓; P4 low-q loss 66.0% uniform / 49.0% GIFT (65-90% / 15-45%; paper "
                        "79.7% / 29.6%) ✗; P5 Shadow-FT ‖ΔW‖/‖W_I − W_B‖ 0.100 (≤ 0.3) ✓")
    # only what was measured: a run without Shadow-FT has no P5
    only = verdict({**summary("shadow-ft"), "preconditions": {**pre, "met": {"P2": True}}}).splitlines()[0]
    assert only.startswith("Preconditions (1 of 1 met;") and "P5" not in only
    assert not verdict(summary("shadow-ft")).startswith("Preconditions")
