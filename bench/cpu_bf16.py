"""Is bf16 training sound and faster on this CPU? The bundled comparison trained in bfloat16 beside float32.

    python bench/cpu_bf16.py [--fp32 runs/tiny5] [--seeds 0 1] [--out runs/tiny-bf16]

Runs configs/tiny_5seeds.yaml's recipe for Instruct-SFT, Shadow-FT and GIFT (at the γ the five-seed run chose on
dev, λ 1) with `train: dtype: bfloat16` (frozen weights in bf16; LoRA weights and AdamW state stay float32, as PEFT
keeps adapters on bf16 models); annotation, merge and evaluation as in float32. The float32 side is an existing
five-seed run (--fp32) or, without one, is run here on the same seeds. Writes bench/results/cpu_bf16.json
(per seed and method: final task/knowledge/retention, the float32 five-seed intervals, training tokens/s) and
bench/results/cpu_bf16_loss.png (loss curves, same seeds), plus a 2048² matmul's GFLOP/s in both dtypes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, write  # noqa: E402

from gift.experiment import load_run_config, run  # noqa: E402

CONFIG = Path(__file__).parents[1] / "configs" / "tiny_5seeds.yaml"
METHODS = ["instruct", "instruct-sft", "shadow-ft", "gift"]


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def overrides(fp32_results: dict[str, Any] | None, seeds: list[int], out: str, dtype: str) -> dict[str, Any]:
    cfg = load_run_config(CONFIG)
    gamma = fp32_results["points"]["gift"].get("gamma", 1.0) if fp32_results else 1.0
    return {"methods": METHODS, "seeds": seeds, "out": out, "select": {},  # both dtypes at one fixed point, λ 1
            "train": {**cfg.train, "gamma": gamma, "dtype": dtype, "gradient_checkpointing": False}}


def curves(run_dir: Path, method: str, seed: int, gamma: float) -> list[dict[str, Any]]:
    name = f"{method}-s{seed}" if method != "gift" or gamma == 1.0 else f"gift-g{gamma:g}-s{seed}"
    for candidate in (name, f"{method}-s{seed}"):
        path = run_dir / "adapters" / candidate / "log.jsonl"
        if path.exists():
            return [json.loads(line) for line in path.read_text().splitlines()]
    raise FileNotFoundError(f"{run_dir}/adapters/{name}/log.jsonl")


def tokens_per_s(log: list[dict[str, Any]]) -> float:
    """Training tokens per second between the first and last logged step (start-up excluded)."""
    return sum(r["tokens"] for r in log[1:]) / (log[-1]["seconds"] - log[0]["seconds"])


def headline(res: dict[str, Any]) -> dict[str, float]:
    return {b: r["metrics"]["accuracy"]["value"] for b, r in res.items() if "accuracy" in r["metrics"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", help="an existing gift run of configs/tiny_5seeds.yaml (float32)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--out", default="runs/tiny-bf16")
    args = ap.parse_args(argv)
    fp32_dir = Path(args.fp32) if args.fp32 else Path(args.out + "-fp32")
    fp32 = json.loads((fp32_dir / "results.json").read_text()) if args.fp32 else None
    if fp32 is None:
        run(CONFIG, overrides(None, args.seeds, str(fp32_dir), "float32"))
        fp32 = json.loads((fp32_dir / "results.json").read_text())
    run(CONFIG, overrides(fp32, args.seeds, args.out, "bfloat16"))
    bf16 = json.loads((Path(args.out) / "results.json").read_text())
    gamma = fp32["points"]["gift"].get("gamma", 1.0)
    per_seed, speed, loss = {}, {}, {}
    for method in METHODS[1:]:
        for seed in args.seeds:
            key = f"{method} seed {seed}"
            logs = {"float32": curves(fp32_dir, method, seed, gamma),
                    "bfloat16": curves(Path(args.out), method, seed, gamma)}
            loss[key] = {d: [r["loss"] for r in log] for d, log in logs.items()}
            speed[key] = {d: tokens_per_s(log) for d, log in logs.items()}
            per_seed[key] = {"float32": headline(fp32["per_seed"][method][str(seed)]),
                             "bfloat16": headline(bf16["per_seed"][method][str(seed)])}
    intervals = {m: {b: r["accuracy"]["ci"] for b, r in fp32["methods"][m].items()} for m in METHODS[1:]}
    inside = {key: {b: intervals[key.split(" seed ")[0]][b][0] <= v <= intervals[key.split(" seed ")[0]][b][1]
                    for b, v in r["bfloat16"].items()} for key, r in per_seed.items()}
    plot(loss, RESULTS / "cpu_bf16_loss.png")
    payload = {"fp32_run": str(fp32_dir), "fp32_seeds": fp32["seeds"], "bf16_run": args.out, "seeds": args.seeds,
               "matmul_2048_gflops": {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)},
               "cpu_bf16": {"avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
                            "amx_tile": torch.cpu._is_amx_tile_supported()},
               "per_seed": per_seed, "fp32_intervals": intervals, "bf16_inside_fp32_interval": inside,
               "training_tokens_per_s": speed, "final_loss": {k: {d: v[-1] for d, v in c.items()} for k, c in loss.items()}}
    write("cpu_bf16", payload)
    print(json.dumps({k: payload[k] for k in ("matmul_2048_gflops", "per_seed", "bf16_inside_fp32_interval")}, indent=1))
    return payload


def plot(loss: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, (key, by_dtype) in enumerate(loss.items()):
        for dtype, style in (("float32", "-"), ("bfloat16", "--")):
            ax.plot(range(1, len(by_dtype[dtype]) + 1), by_dtype[dtype], style, color=colors[c % len(colors)],
                    label=f"{key}, {dtype}", linewidth=1)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (Σ w·CE / Σ w)")
    ax.set_yscale("log")
    ax.set_title(f"bundled comparison: float32 (solid) vs bfloat16 (dashed); {machine()['cpu']}")
    ax.legend(fontsize=6, ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
