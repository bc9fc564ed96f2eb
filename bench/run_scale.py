"""What one `gift run` costs: wall time of the whole run and of its selection, bytes written under OUT (and under
OUT/models, the merged copies), and model loads (every transformers `from_pretrained` of a causal LM).

    python bench/run_scale.py --label after --config configs/tiny_paper_8steps.yaml --seeds 0 1 2 --out runs/scale-after

Run it once per side from an empty OUT (the "before" side imports an older checkout through PYTHONPATH); it writes
bench/results/run_scale-<label>.json, and bench/results/run_scale.md when both sides are there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) if path.is_dir() else 0


def measure(config: str, seeds: list[int], out: str) -> dict[str, Any]:
    import transformers

    import gift
    from gift import experiment

    loads: list[str] = []
    original = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def counted(cls: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(path))
        return original(cls, path, *args, **kwargs)

    transformers.AutoModelForCausalLM.from_pretrained = classmethod(counted)
    timed: dict[str, float] = {}
    select = experiment.Experiment.select

    def timed_select(self: Any) -> Any:
        t = time.perf_counter()
        try:
            return select(self)
        finally:
            timed["select_s"] = time.perf_counter() - t

    experiment.Experiment.select = timed_select
    t0 = time.perf_counter()
    summary = experiment.run(config, {"seeds": seeds, "out": out})
    seconds = time.perf_counter() - t0
    root = Path(out)
    import torch

    return {"gift": gift.__file__, "config": config, "seeds": seeds, "cores": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "run_s": round(seconds, 1),
            "select_s": round(timed.get("select_s", float("nan")), 1), "bytes_written": tree_bytes(root),
            "model_bytes": tree_bytes(root / "models"),
            "merged_models": len([p for p in (root / "models").glob("*") if p.is_dir()]) if (root / "models").is_dir()
            else 0, "model_loads": len(loads), "recommendation": summary.get("recommendation"),
            "chosen": {m: v["chosen"] for m, v in (summary.get("selection") or {}).get("methods", {}).items()}}


def table() -> str | None:
    sides = {p.stem.removeprefix("run_scale-"): json.loads(p.read_text()) for p in sorted(RESULTS.glob("run_scale-*.json"))}
    if not {"before", "after"} <= set(sides):
        return None
    b, a = sides["before"], sides["after"]
    rows = [("whole run, s", "run_s"), ("selection, s", "select_s"), ("bytes written", "bytes_written"),
            ("of which merged models", "model_bytes"), ("merged models", "merged_models"), ("model loads", "model_loads")]
    lines = [f"`gift run {a['config']} --seeds {' '.join(map(str, a['seeds']))}`, each side from an empty OUT", "",
             "| | before | after | before / after |", "|---|---|---|---|"]
    for label, key in rows:
        ratio = f"{b[key] / a[key]:.1f}×" if a[key] else "–"
        lines.append(f"| {label} | {b[key]:,} | {a[key]:,} | {ratio} |")
    same = b["chosen"] == a["chosen"] and b["recommendation"] == a["recommendation"]
    lines += ["", f"Selection and recommendation the same on both sides: {'yes' if same else 'NO'} "
                  f"(recommended: {a['recommendation']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", required=True)
    p.add_argument("--config", default="configs/tiny_paper_8steps.yaml")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    figures = measure(args.config, args.seeds, args.out)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"run_scale-{args.label}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    md = table()
    if md:
        (RESULTS / "run_scale.md").write_text(md)
        print(md)


if __name__ == "__main__":
    sys.exit(main())
