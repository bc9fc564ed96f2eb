"""RESULTS.md's decisive table from finished `gift run` directories: each method at its dev-chosen point, its test
figures and its paired differences against the instruct model and against the recommended one; then, one row per
run, GIFT against the best baseline that dev chose under the same floor (the across-variants table).

    python scripts/results_table.py runs/paper-8steps runs/paper-252steps
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from gift.metrics import paired_difference
from gift.report import settings_text
from gift.selection import Point, choose, recommend


def pct(d: dict) -> str:
    return f"{100 * d['value']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"


def table(run: Path) -> str:
    res = json.loads((run / "results.json").read_text())
    methods, paired, rec = res["methods"], res["paired"], res["recommendation"]["method"]
    lines = [f"`{run}`: seeds {res['seeds']}, selection seeds {res['selection']['seeds']}, floor: dev retention ≥ "
             f"{100 * res['selection']['floor']:.1f}%; recommended on dev: **{rec}**.", "",
             "| method | dev-chosen point | task greedy | task Avg@16 | knowledge | retention | task vs instruct "
             "(paired 95%) | Avg@16 vs instruct | task vs recommended |", "|---|---|---|---|---|---|---|---|---|"]
    for m, r in methods.items():
        vs = paired.get(m, {})
        cells = [settings_text(res["points"].get(m)) if m != "instruct" else "–"]
        cells += [f"{100 * r['task']['accuracy']['value']:.1f}", f"{100 * r['task']['avg@16']['value']:.1f}",
                  f"{100 * r['knowledge']['accuracy']['value']:.1f}", f"{100 * r['retention']['accuracy']['value']:.1f}"]
        cells += [pct(vs["instruct"]["task"]["accuracy"]) if "instruct" in vs else "–",
                  pct(vs["instruct"]["task"]["avg@16"]) if "instruct" in vs else "–",
                  pct(vs["recommended"]["task"]["accuracy"]) if "recommended" in vs else "–"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def instruct_point(sel: dict) -> Point:
    """Keeping the instruct model (λ 0) as a candidate, with its dev figures from a run's `selection`."""
    return Point({"scale": 0.0}, sel["instruct"]["task"], sel["instruct"]["retention"])


def floors(run: Path, drops: tuple[float, ...] = (2, 5, 10)) -> str:
    """What dev alone would choose under looser floors (from the run's dev candidates; test is not read again)."""
    sel = json.loads((run / "results.json").read_text())["selection"]
    start = instruct_point(sel)
    lines = ["| floor: instruct's dev retention − | " + " | ".join(sel["methods"]) + " | recommended |",
             "|---|" + "---|" * (len(sel["methods"]) + 1)]
    for drop in drops:
        chosen = {}
        for m, s in sel["methods"].items():
            pts = [Point({k: v for k, v in p.items() if k not in ("task", "retention")}, p["task"], p["retention"])
                   for p in s["points"]]
            chosen[m] = choose(pts, start.retention - drop / 100, s["default"])
        cells = [f"{settings_text(c.settings)}: {100 * c.task:.1f} / {100 * c.retention:.1f}" for c in chosen.values()]
        lines.append(f"| {drop:g} points | " + " | ".join(cells) + f" | {recommend(chosen, start)} |")
    return "\n".join(lines)


GIFT = ("gift", "gift-baset", "gift-published")  # the method's rows; every other transfer method is a baseline


def best_baseline(sel: dict) -> str:
    """The baseline dev would ship under the run's floor, as `recommend` picks among all methods ("instruct": keep
    the instruct model); chosen from the run's dev figures alone."""
    start = instruct_point(sel)
    chosen = {m: Point(s["chosen"], s["dev"]["task"], s["dev"]["retention"]) if s["chosen"] else None
              for m, s in sel["methods"].items() if m not in GIFT}
    return recommend(chosen, start)


def versus_baseline(runs: list[Path], against: str | None = None) -> str:
    """Markdown, a row per run: GIFT tuned, GIFT-BaseT and GIFT as published against the best dev-chosen baseline
    (or the method `against` at its dev-chosen point: "shadow-ft" is the paper's own contrast), test task greedy and
    Avg@16 and the retention benchmark, paired 95% intervals in points."""
    lines = [f"| run | {against or 'best baseline on dev'} (its point) | GIFT tuned (its point): task greedy / Avg@16 / "
             "retention vs that baseline | GIFT-BaseT | GIFT as published |", "|---|---|---|---|---|"]
    for run in runs:
        res = json.loads((run / "results.json").read_text())
        per_seed, base = res["per_seed"], against or best_baseline(res["selection"])
        cells = [f"`{run.name}`", f"{base} ({settings_text(res['points'].get(base)) if base != 'instruct' else '–'})"]
        for method in GIFT:
            if method not in per_seed:
                cells.append("–")
                continue
            parts = []
            for bench, metric in (("task", "accuracy"), ("task", "avg@16"), ("retention", "accuracy")):
                sides = [[np.asarray(s[bench]["metrics"][metric]["scores"], float) for s in per_seed[m].values()]
                         for m in (method, base)]
                parts.append(pct(paired_difference(*sides)))
            point = settings_text(res["points"][method]) if method != "gift-published" else "γ 1, λ 1"
            cells.append(f"({point}) " + " / ".join(parts))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    runs = [Path(p) for p in sys.argv[1:]]
    print("\n\n".join(table(p) + "\n\nDev choices under looser floors (dev task / dev retention %):\n\n"
                      + floors(p) for p in runs))
    print("\n\nGIFT against the best baseline dev chose under the same floor:\n\n" + versus_baseline(runs))
    print("\n\nGIFT against Shadow-FT at its dev-chosen point (the paper's contrast):\n\n"
          + versus_baseline(runs, "shadow-ft"))
