"""RESULTS.md's decisive table from finished `gift run` directories: each method at its dev-chosen point, its test
figures and its paired differences against the instruct model and against the recommended one.

    python scripts/results_table.py runs/paper-8steps runs/paper-252steps
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

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


def floors(run: Path, drops: tuple[float, ...] = (2, 5, 10)) -> str:
    """What dev alone would choose under looser floors (from the run's dev candidates; test is not read again)."""
    sel = json.loads((run / "results.json").read_text())["selection"]
    start = Point({"scale": 0.0}, sel["instruct"]["task"], sel["instruct"]["retention"])
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


if __name__ == "__main__":
    print("\n\n".join(table(Path(p)) + "\n\nDev choices under looser floors (dev task / dev retention %):\n\n"
                      + floors(Path(p)) for p in sys.argv[1:]))
