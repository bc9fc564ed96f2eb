"""gift eval end to end on a tiny random model: files, metrics, determinism, comparison, clear errors."""
from __future__ import annotations

import json

import pytest

from gift.cli import main
from gift.config import EvalConfig
from gift.errors import GiftError
from gift.evaluate import evaluate
from tests.conftest import SHARED_DATA, write_jsonl


def run_eval(model, out, *benches, **kw):
    settings = {"limit": 5, "samples": 4, "max_new_tokens": 8, "batch_size": 8, "seed": 0, **kw}
    return evaluate(EvalConfig(model=str(model), bench=list(benches), out=str(out), **settings))


def test_eval_end_to_end(make_pair, tmp_path):
    if not (SHARED_DATA / "gsm8k_test.jsonl").exists():
        pytest.skip("../shared/data not present")
    _, instruct = make_pair("llama", True)
    custom = write_jsonl(tmp_path / "copy.jsonl", [{"question": f"Repeat: {w}", "answer": w} for w in "abcdefg"])
    out = run_eval(instruct, tmp_path / "ev", "gsm8k", "mmlu_stem", "ifeval-lite", str(custom), kind="exact")
    results = json.loads((out / "results.json").read_text())
    benches = results["benchmarks"]
    assert set(benches) == {"gsm8k", "mmlu_stem", "ifeval-lite", "copy"}
    m = benches["gsm8k"]["metrics"]
    assert set(m) == {"accuracy"} | {f"{n}@{k}" for n in ("avg", "maj", "pass") for k in (1, 2, 4)}
    for v in m.values():
        assert 0 <= v["ci"][0] <= v["value"] <= v["ci"][1] <= 1
    assert set(benches["ifeval-lite"]["metrics"]) == {"prompt_accuracy", "instruction_accuracy"}
    assert results["settings"]["samples"] == 4 and results["settings"]["seed"] == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 and all(len(s["samples"]) == 4 for s in samples if s["benchmark"] == "gsm8k")
    assert (out / "scaling.png").stat().st_size > 1000

    again = run_eval(instruct, tmp_path / "ev2", "gsm8k", "mmlu_stem", "ifeval-lite", str(custom), kind="exact")
    assert (again / "samples.jsonl").read_text() == (out / "samples.jsonl").read_text()  # same seed, same samples

    assert main(["eval", "--compare", str(out), str(again), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").exists()


def test_loglik_choice_mode(make_pair, tmp_path):
    if not (SHARED_DATA / "mmlu_stem_test.jsonl").exists():
        pytest.skip("../shared/data not present")
    _, instruct = make_pair("llama", True)
    out = run_eval(instruct, tmp_path / "ev", "mmlu_stem", samples=1, choice_mode="loglik")
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(s["greedy_answer"] in "ABCD" for s in samples)


def test_eval_errors_are_clear(make_pair, tmp_path, monkeypatch):
    _, instruct = make_pair("llama", True)
    monkeypatch.setenv("GIFT_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GiftError, match="--bench nope: neither a built-in benchmark"):
        run_eval(instruct, tmp_path / "ev", "nope")
    with pytest.raises(GiftError, match="needs --temperature > 0"):
        EvalConfig(model="m", bench=["gsm8k"], out="o", samples=4, temperature=0)
    with pytest.raises(GiftError, match="needs --model, --bench and --out"):
        EvalConfig(model="m")
    try:
        import vllm  # noqa: F401
    except ImportError:
        custom = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "answer": "1"}])
        with pytest.raises(GiftError, match="--backend vllm needs the vllm package"):
            run_eval(instruct, tmp_path / "ev", str(custom), backend="vllm", samples=1)
    assert not (tmp_path / "ev").exists()


def test_missing_builtin_file_names_where_it_looked(monkeypatch, tmp_path):
    from gift import benchmarks
    monkeypatch.setattr(benchmarks, "data_dirs", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(GiftError, match=f"gsm8k_test.jsonl not found \\(looked in {tmp_path / 'a'}, {tmp_path / 'b'}\\)"):
        benchmarks.load_benchmark("gsm8k")
