"""Does the paper task's train/test overlap move the comparison? Every method's paired task difference against the
instruct model, on all test problems and on those whose question is not in the training file.

    python scripts/overlap.py runs/paper-252steps [--out docs/results/fair/overlap-252steps.json]

The shipped task's own draw put 3 of its 300 test questions in its 2000 training rows (the variant sweep draws them
again); this reads a finished `gift run` directory's per-seed scores, nothing is evaluated again.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from gift.data import read_jsonl
from gift.metrics import paired_difference


def questions(path: str) -> list[str]:
    return [row["question"] for _, row in read_jsonl(path)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = yaml.safe_load((args.run / "run_config.yaml").read_text())
    test = next(b for b in cfg["benchmarks"] if b["name"] == "task")["file"]
    seen = set(questions(cfg["train_data"]))
    clean = np.array([q not in seen for q in questions(test)])
    per_seed = json.loads((args.run / "results.json").read_text())["per_seed"]
    out: dict = {"run": str(args.run), "test_problems": int(clean.size), "in_train": int((~clean).sum()), "methods": {}}
    for method, seeds in per_seed.items():
        if method == "instruct":
            continue
        for metric in ("accuracy", "avg@16"):
            sides = [[np.asarray(s["task"]["metrics"][metric]["scores"], float) for s in d.values()]
                     for d in (seeds, per_seed["instruct"])]
            whole, kept = paired_difference(*sides), paired_difference(*[[x[clean] for x in side] for side in sides])
            out["methods"].setdefault(method, {})[metric] = {"all": whole, "without_overlap": kept}
            print(f"{method:15s} {metric:8s} all {100 * whole['value']:+6.1f} [{100 * whole['lo']:+.1f}, "
                  f"{100 * whole['hi']:+.1f}]   without the {out['in_train']} in train {100 * kept['value']:+6.1f} "
                  f"[{100 * kept['lo']:+.1f}, {100 * kept['hi']:+.1f}]")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
