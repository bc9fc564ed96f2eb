"""How far Rho-1 spreads over seeds on the paper-regime task: Rho-1 (ratio 0.6) merged at λ 1, greedy on the task's
test split, at seeds 0-9 and the two seeds (21, 22) a new user tried, through the fair run's own stages (its cache).

    python scripts/rho_seeds.py [--out runs/paper-252steps] [--seeds 0 1 ... 21 22]

A probe of one method at one fixed point (λ 1), not a selection: it reads test only to measure the spread the issue
asks about, and nothing here feeds the run's selection or recommendation. Writes docs/results/fair/rho_seeds.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from gift.experiment import LOG, Experiment, load_benchmarks, load_run_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny_paper.yaml"))
    ap.add_argument("--out", default="runs/paper-252steps")
    ap.add_argument("--seeds", nargs="+", type=int, default=[*range(10), 21, 22])
    args = ap.parse_args()
    cfg = load_run_config(args.config, {"out": args.out, "seeds": sorted(set(args.seeds) | {0, 1, 2})})
    experiment = Experiment(cfg)
    task = load_benchmarks(cfg, {"task"})
    rows = {}
    for seed in args.seeds:
        result = experiment.evaluation("rho", seed, task, None, 1.0, "-probe", greedy=True)["task"]
        log = [json.loads(line) for line in (Path(args.out) / "adapters" / f"rho-s{seed}" / LOG).read_text().splitlines()]
        rows[seed] = {"accuracy": result["metrics"]["accuracy"]["value"],
                      "final_train_loss": statistics.mean(r["loss"] for r in log[-10:])}
        print(f"seed {seed}: {rows[seed]['accuracy']:.1%} (train loss, last 10 steps {rows[seed]['final_train_loss']:.4f})",
              flush=True)
    first = [rows[s]["accuracy"] for s in args.seeds if s < 10]
    summary = {"seeds": rows, "seeds_0_9": {"mean": statistics.mean(first), "sd": statistics.stdev(first),
                                            "min": min(first), "max": max(first)}}
    path = ROOT / "docs" / "results" / "fair" / "rho_seeds.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["seeds_0_9"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
