"""Shared by the benchmarks: alternate two sides, repeat, report median and spread; machine description."""
from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def alternate(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Time a and b alternately (a, b, a, b, ...) after one warm-up each; median, spread and ratio b/a."""
    a(), b()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(repeats):
        for name, fn in (("a", a), ("b", b)):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"a_s": med["a"], "b_s": med["b"], "a_spread_s": [min(times["a"]), max(times["a"])],
            "b_spread_s": [min(times["b"]), max(times["b"])], "ratio_b_over_a": med["b"] / med["a"], "repeats": repeats}


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
