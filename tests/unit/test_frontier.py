"""The frontier's reading: best task gain over λ under a retention floor, from λ = 0 (the instruct model), and the
verdict lines that print it."""
from __future__ import annotations

import pytest

from gift.errors import GiftError
from gift.experiment import RunConfig
from gift.report import best_under_floor, frontier_points, frontier_points_table, frontier_table, verdict


def entry(value: float) -> dict:
    return {"accuracy": {"value": value, "ci": [value - 0.05, value + 0.05], "seeds": [value]}}


def summary() -> dict:
    res = lambda task, kept: {"math": entry(task), "ret": entry(kept)}  # noqa: E731
    return {"roles": {"math": "task", "ret": "retention"},
            "methods": {"instruct": res(0.40, 0.90), "shadow-ft": res(0.50, 0.60)},
            "frontier": {"shadow-ft": {"0.5": res(0.45, 0.85), "1": res(0.50, 0.60)},
                         "gift": {"0.5": res(0.38, 0.91), "1": res(0.42, 0.89)}}}


def test_points_start_at_the_instruct_model():
    pts = frontier_points(summary())
    assert pts["shadow-ft"] == [(0.0, 0.40, 0.90), (0.5, 0.45, 0.85), (1.0, 0.50, 0.60)]


def test_best_gain_respects_each_floor():
    pts = frontier_points(summary())
    assert best_under_floor(pts["shadow-ft"], 2) == (0.0, 0.40, 0.90)  # every merged point loses more than 2
    assert best_under_floor(pts["shadow-ft"], 10) == (0.5, 0.45, 0.85)
    assert best_under_floor(pts["gift"], 2) == (1.0, 0.42, 0.89)  # retention 89 ≥ 90 − 2


def test_table_names_the_scale_and_the_interval():
    table = frontier_table(summary())
    assert "| shadow-ft | +0.0 at λ 0 (task 0.400 [0.350, 0.450]; retention +0.0) | +5.0 at λ 0.5" in table
    assert "| gift | +2.0 at λ 1 (task 0.420 [0.370, 0.470]; retention -1.0)" in table


def test_every_point_is_tabulated_at_its_scale():
    table = frontier_points_table(summary())
    assert "| method | λ 0 | λ 0.5 | λ 1 |" in table
    assert "| shadow-ft | 40.0 / 90.0 | 45.0 / 85.0 | 50.0 / 60.0 |" in table
    assert "| gift | 40.0 / 90.0 | 38.0 / 91.0 | 42.0 / 89.0 |" in table


def test_verdict_reads_both_floors_and_runs_without_a_retention_benchmark():
    s = summary() | {"signal": {}, "tuned": {}}
    lines = verdict(s).splitlines()
    assert "Frontier over λ, best task gain with retention ≥ instruct − 10: shadow-ft +5.0 (λ 0.5), gift +2.0 (λ 1)." \
        in lines
    assert "  shadow-ft      task  +10.0   retention  -30.0" in lines
    only_task = s | {"roles": {"math": "task"}, "frontier": {}}  # a gate run: one task benchmark, nothing retained
    lines = verdict(only_task).splitlines()
    assert lines[0].endswith("no retention benchmark):") and "  shadow-ft      task  +10.0" in lines


def test_a_frontier_needs_both_axes():
    task = {"name": "math", "file": "m.jsonl", "kind": "math", "role": "task"}
    with pytest.raises(GiftError, match="frontier: needs a task and a retention benchmark"):
        RunConfig(base="b", instruct="i", train_data="d", benchmarks=[task], frontier=[0.5])
    RunConfig(base="b", instruct="i", train_data="d", benchmarks=[task])  # without a frontier, one task is enough
