"""The dev-only choice of each method's settings and of the model to ship (gift.selection)."""
from __future__ import annotations

from gift.selection import Point, choose, recommend

START = Point({"scale": 0.0}, task=0.60, retention=0.90)
DEFAULT = {"gamma": 1.0, "scale": 1.0}


def pt(gamma: float, scale: float, task: float, retention: float) -> Point:
    return Point({"gamma": gamma, "scale": scale}, task, retention)


def test_the_best_dev_task_under_the_floor_wins():
    points = [START, pt(1.0, 1.0, 0.80, 0.70), pt(0.5, 0.25, 0.70, 0.89), pt(0.5, 0.5, 0.75, 0.87)]
    assert choose(points, floor=0.88, default=DEFAULT).settings == {"gamma": 0.5, "scale": 0.25}
    assert choose(points, floor=0.60, default=DEFAULT).settings == {"gamma": 1.0, "scale": 1.0}  # a lower floor


def test_every_merge_losing_keeps_the_instruct_model():
    points = [START, pt(1.0, 1.0, 0.50, 0.90), pt(0.5, 0.5, 0.55, 0.95)]
    assert choose(points, floor=0.88, default=DEFAULT).scale == 0.0


def test_ties_keep_the_published_default_then_more_retention_then_the_smaller_scale():
    tied = [START, pt(0.5, 0.5, 0.70, 0.90), pt(1.0, 1.0, 0.70, 0.89), pt(2.0, 0.5, 0.70, 0.92)]
    assert choose(tied, 0.85, DEFAULT).settings == DEFAULT
    no_default = [START, pt(0.5, 0.5, 0.70, 0.90), pt(2.0, 0.5, 0.70, 0.92), pt(2.0, 0.25, 0.70, 0.92)]
    assert choose(no_default, 0.85, DEFAULT).settings == {"gamma": 2.0, "scale": 0.25}


def test_no_candidate_above_the_floor_is_none():
    assert choose([START, pt(1.0, 1.0, 0.9, 0.5)], floor=0.95, default=DEFAULT) is None


def test_recommendation_prefers_instruct_on_ties_and_ignores_lambda_zero():
    chosen = {"shadow-ft": Point({"scale": 0.25}, 0.60, 0.9), "gift": Point({"scale": 0.0}, 0.60, 0.9), "rho": None}
    assert recommend(chosen, START) == "instruct"
    chosen["dft"] = Point({"scale": 0.5}, 0.61, 0.89)
    assert recommend(chosen, START) == "dft"
