"""Choosing each method's settings, and the model to ship, from dev figures alone.

gift run hands `choose` every candidate of a method (its knob, such as GIFT's γ, × the merge scale λ, λ = 0 being
the untouched instruct model), each with its dev task score and dev retention averaged over the selection seeds;
test is evaluated afterwards, once per method, at the point chosen here. Nothing here ever sees a test figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Point:
    """One candidate: its settings (always `scale`; a knob such as `gamma` where the method has one) and its dev
    figures (means over benchmarks and selection seeds, in [0, 1])."""

    settings: dict[str, float] = field(hash=False)
    task: float
    retention: float

    @property
    def scale(self) -> float:
        return self.settings["scale"]


def choose(points: list[Point], floor: float, default: dict[str, float]) -> Point | None:
    """The candidate with the best dev task score among those whose dev retention is at least `floor`; ties keep
    the published default (`default`, e.g. γ 1 at λ 1), then the higher retention, then the smaller λ. None when no
    candidate keeps the floor."""
    allowed = [p for p in points if p.retention >= floor - 1e-9]
    if not allowed:
        return None
    return max(allowed, key=lambda p: (round(p.task, 9), p.settings == default, round(p.retention, 9), -p.scale))


def recommend(chosen: dict[str, Point | None], instruct: Point) -> str:
    """The method whose chosen point scores best on dev (the instruct model, "instruct", wins ties: keeping the
    model you have is the default)."""
    best, score = "instruct", round(instruct.task, 9)
    for method, point in chosen.items():
        if point is not None and point.scale > 0 and round(point.task, 9) > score:
            best, score = method, round(point.task, 9)
    return best
