"""The benchmark suite's own smoke test: every part runs on tiny random models and writes its figures.
(No timing is asserted anywhere in the test suite.)"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "bench"


@pytest.mark.slow
def test_bench_suite_runs_quick(monkeypatch, tmp_path):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    import common
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    results = bench.main(["--quick"])
    assert set(results) == {"check", "train", "loss", "annotate", "generate", "merge", "trl"}
    assert results["check"]["result"]["peak_rss_mb"] > 0
    for part in results:
        saved = json.loads((tmp_path / f"quick-{part}.json").read_text())
        assert saved["machine"]["torch"]
    assert results["train"]["rows"][0]["ratio_gift_over_sft"]["time"] > 0
    assert results["generate"]["speedup_batched"] > 0
    assert results["trl"]["rows"][0]["ratio_gift_over_trl"]["tokens_per_s"] > 0
    assert "| train step |" in (tmp_path / "quick-summary.md").read_text()
