"""The GPU half of bench/gpu_check.sh: served candidates against merged models on the device, and one served run."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from run_scale import measure  # noqa: E402

from gift.benchmarks import from_spec  # noqa: E402
from gift.config import ASSETS, EvalConfig, MergeConfig  # noqa: E402
from gift.evaluate import evaluate  # noqa: E402
from gift.merge import merge  # noqa: E402
from gift.serve import Candidate, HFServer, VLLMServer  # noqa: E402
from gift.tiny import random_adapter  # noqa: E402

TINY = ASSETS / "tiny"
DEV = {"name": "dev", "file": str(TINY / "tasks" / "paper" / "dev.jsonl"), "kind": "math", "answer_field": "reference",
       "instruction": ""}


def equivalence(root: Path, dtype: str, backend: str) -> list[dict]:
    rows, bench = [], from_spec(DEV, 200)
    common = {"max_new_tokens": 48, "dtype": dtype, "backend": backend, "gpu_memory_utilization": 0.4}
    made = random_adapter(TINY / "base", root / "adapter", rank=8, alpha=16)
    settings = EvalConfig(model="-", bench=["-"], out="-", backend=backend, dtype=dtype, gpu_memory_utilization=0.4)
    server = HFServer(str(TINY / "instruct"), dtype) if backend == "hf" else VLLMServer(str(TINY / "instruct"), settings,
                                                                                        8, root / "served")
    for scale in (0.25, 1.0):
        merged = merge(MergeConfig(instruct=str(TINY / "instruct"), adapter=str(made), out=str(root / f"m{scale}"),
                                   scale=scale, dtype="float32"))
        t = time.perf_counter()
        with server.serve(Candidate(str(made), scale)) as served:
            evaluate(EvalConfig(model=served.label, bench=["dev"], out=str(root / f"s{scale}{backend}{dtype}"), **common),
                     [bench], quiet=True, served=served)
        served_s = time.perf_counter() - t
        t = time.perf_counter()
        evaluate(EvalConfig(model=str(merged), bench=["dev"], out=str(root / f"g{scale}{backend}{dtype}"), **common),
                 [bench], quiet=True)
        merged_s = time.perf_counter() - t
        sides = [[json.loads(x) for x in (root / f"{k}{scale}{backend}{dtype}" / "samples.jsonl").read_text().splitlines()]
                 for k in ("s", "g")]
        acc = [json.loads((root / f"{k}{scale}{backend}{dtype}" / "results.json").read_text())["benchmarks"]["dev"]
               ["metrics"]["accuracy"]["value"] for k in ("s", "g")]
        rows.append({"backend": backend, "dtype": dtype, "scale": scale, "served_accuracy": acc[0],
                     "merged_accuracy": acc[1], "greedy_agreement": sum(a["greedy"] == b["greedy"] for a, b in
                                                                        zip(*sides)) / len(sides[0]),
                     "served_s": round(served_s, 2), "merged_s": round(merged_s, 2)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    figures = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "vllm": importlib.util.find_spec("vllm") is not None, "equivalence": []}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):
            figures["equivalence"] += equivalence(Path(tmp) / f"hf-{dtype}", dtype, "hf")
        if figures["vllm"]:
            figures["equivalence"] += equivalence(Path(tmp) / "vllm", "bfloat16", "vllm")
        figures["run"] = measure("configs/tiny_paper_8steps.yaml", [0], str(Path(tmp) / "run"))
    path = Path(args.out) / "gpu_check.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
