"""Build the paper-regime task on the bundled pair and measure its gates before any comparison.

    python scripts/build_paper_task.py [--variants near-style near-style-wrong-30 ...] [--ship VARIANT]

Each variant (gift.tiny.regime.VARIANTS) is written to runs/paper-task/<variant>/data and measured by one gift run
(instruct, Instruct-SFT, Shadow-FT, GIFT; seed 0; greedy on test; the demo's training recipe): the four gates
come from baseline figures and the teacher's view of the data, never from GIFT's accuracy. Every variant's
figures go to runs/paper-task/variants.json; --ship copies one variant's data into src/gift/assets/tiny/tasks/paper
with a manifest holding every variant's gate figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import yaml

from gift.experiment import ASSETS, DEMO_CONFIG, run
from gift.tiny import world
from gift.tiny.regime import GATES, VARIANTS, gate_config, gate_figures, write_task

PAIR = ASSETS / "tiny"
SHIPPED = PAIR / "tasks" / "paper"


def measure(name: str, root: Path) -> dict:
    people = [world.Person(**p) for p in json.loads((PAIR / "world.json").read_text())]
    data = root / name / "data"
    write_task(name, people, data)
    recipe = yaml.safe_load(DEMO_CONFIG.read_text())["train"]
    config = root / name / "gates.yaml"
    config.write_text(yaml.safe_dump(gate_config(PAIR, data, root / name / "run", recipe)))
    figures = gate_figures(run(config))
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k != "passed")
          + f"; passed {sum(figures['passed'].values())}/{len(GATES)}", flush=True)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--root", default="runs/paper-task")
    ap.add_argument("--ship", choices=list(VARIANTS), help="copy this variant's data into the package")
    args = ap.parse_args()
    root = Path(args.root)
    summary_path = root / "variants.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.variants:
        gates = measure(name, root)
        summary[name] = {"variant": json.loads((root / name / "data" / "variant.json").read_text()), "gates": gates}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    if args.ship:
        shutil.rmtree(SHIPPED, ignore_errors=True)
        shutil.copytree(root / args.ship / "data", SHIPPED)
        files = sorted(p.name for p in SHIPPED.glob("*.jsonl"))
        manifest = {"shipped": args.ship, "gates": {g: target for g, (_, target) in GATES.items()},
                    "variants": summary, "sha256": {f: hashlib.sha256((SHIPPED / f).read_bytes()).hexdigest()
                                                    for f in files}}
        (SHIPPED / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"shipped {args.ship} -> {SHIPPED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
