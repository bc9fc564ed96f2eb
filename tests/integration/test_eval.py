"""gift eval end to end on a tiny random model: files, metrics, determinism, comparison, clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from gift.cli import main
from gift.config import EvalConfig
from gift.errors import GiftError
from gift.evaluate import evaluate
from tests.conftest import SHARED_DATA, shared_file, write_jsonl


def run_eval(model, out, *benches, **kw):
    settings = {"limit": 5, "samples": 4, "max_new_tokens": 8, "batch_size": 8, "seed": 0, **kw}
    return evaluate(EvalConfig(model=str(model), bench=list(benches), out=str(out), **settings))


def test_eval_end_to_end(make_pair, tmp_path):
    if not (SHARED_DATA / "gsm8k_test.jsonl").exists():
        pytest.skip("../shared/data not present")
    _, instruct = make_pair("llama", True, max_positions=4096)  # character-level tokens: long prompts
    custom = write_jsonl(tmp_path / "copy.jsonl", [{"question": f"Repeat: {w}", "answer": w} for w in "abcdefg"])
    out = run_eval(instruct, tmp_path / "ev", "gsm8k", "mmlu_stem", "ifeval", f"{custom}:exact")
    results = json.loads((out / "results.json").read_text())
    benches = results["benchmarks"]
    assert set(benches) == {"gsm8k", "mmlu_stem", "ifeval", "copy"}
    assert results["configs"]["copy"]["kind"] == "exact" and results["configs"]["gsm8k"]["kind"] == "math"
    assert {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "date"} <= set(results)
    row = results["results"]["gsm8k"]
    assert row["accuracy,none"] == benches["gsm8k"]["metrics"]["accuracy"]["value"]
    assert {"accuracy_stderr,none", "pass@4_ci95,none"} <= set(row)
    m = benches["gsm8k"]["metrics"]
    assert set(m) == {"accuracy"} | {f"{n}@{k}" for n in ("avg", "maj", "pass") for k in (1, 2, 4)}
    for v in m.values():
        assert 0 <= v["ci"][0] <= v["value"] <= v["ci"][1] <= 1
    assert set(benches["ifeval"]["metrics"]) == {"prompt_level_strict_acc", "inst_level_strict_acc",
                                                 "prompt_level_loose_acc", "inst_level_loose_acc"}
    assert results["settings"]["samples"] == 4 and results["settings"]["seed"] == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 and all(len(s["samples"]) == 4 for s in samples if s["benchmark"] == "gsm8k")
    assert (out / "scaling.png").stat().st_size > 1000

    for bench in ("gsm8k", "mmlu_stem", "ifeval"):  # re-grading gift eval's own samples gives identical numbers
        assert main(["score", "--bench", bench, "--responses", str(out / "samples.jsonl"), "--out",
                     str(tmp_path / f"score-{bench}")]) == 0
        rescored = json.loads((tmp_path / f"score-{bench}" / "results.json").read_text())
        assert rescored["results"][bench] == results["results"][bench]

    again = run_eval(instruct, tmp_path / "ev2", "gsm8k", "mmlu_stem", "ifeval", f"{custom}:exact")
    assert (again / "samples.jsonl").read_text() == (out / "samples.jsonl").read_text()  # same seed, same samples

    assert main(["eval", "--compare", str(out), str(again), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").exists()
    csv = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert csv[0] == "run,benchmark,metric,value,ci_low,ci_high" and len(csv) > 10
    assert (tmp_path / "cmp" / "compare.md").read_text().startswith("| run | benchmark |")


def test_interrupted_eval_resumes_from_finished_benchmarks(make_pair, tmp_path, monkeypatch):
    from gift import evaluate as ev

    _, instruct = make_pair("llama", True)
    custom = [write_jsonl(tmp_path / f"{n}.jsonl", [{"question": f"Say {w}", "answer": w} for w in "abc"]) for n in "xy"]
    real, calls = ev.generate, []

    def counting(bench, *a):
        calls.append(bench.name)
        if bench.name == "y" and len(calls) == 2:
            raise KeyboardInterrupt
        return real(bench, *a)

    monkeypatch.setattr(ev, "generate", counting)
    with pytest.raises(KeyboardInterrupt):
        run_eval(instruct, tmp_path / "ev", *map(str, custom), kind="exact")
    assert not (tmp_path / "ev").exists() and (tmp_path / "ev.partial" / "x.json").exists()
    run_eval(instruct, tmp_path / "ev", *map(str, custom), kind="exact")
    assert calls == ["x", "y", "y"] and not (tmp_path / "ev.partial").exists()
    fresh = run_eval(instruct, tmp_path / "ev2", *map(str, custom), kind="exact")
    assert (fresh / "samples.jsonl").read_text() == (tmp_path / "ev" / "samples.jsonl").read_text()

    calls.clear()  # completions cached in another dtype are not this dtype's: generated again
    with pytest.raises(KeyboardInterrupt):
        run_eval(instruct, tmp_path / "ev3", *map(str, custom), kind="exact")
    run_eval(instruct, tmp_path / "ev3", *map(str, custom), kind="exact", dtype="bfloat16")
    assert calls == ["x", "y", "x", "y"]


def test_first_use_notices(make_pair, tmp_path, capsys):
    """A --max-new-tokens past the context is lowered with a notice; unanswerable completions are shown."""
    _, instruct = make_pair("llama", True)
    custom = write_jsonl(tmp_path / "q.jsonl", [{"question": f"Tom has {a} apples", "answer": str(a)} for a in range(4)])
    out = run_eval(instruct, tmp_path / "ev", str(custom), samples=1, max_new_tokens=100_000)
    err = capsys.readouterr().err
    context = json.loads((instruct / "config.json").read_text())["max_position_embeddings"]
    assert "--max-new-tokens 100000 lowered to" in err and f"context {context} tokens" in err
    assert json.loads((out / "results.json").read_text())["configs"]["q"]["generation_kwargs"]["max_gen_toks"] < context
    assert "no answer could be extracted from" in err and "the first three" in err


def test_loglik_choice_mode(make_pair, tmp_path):
    if not (SHARED_DATA / "mmlu_stem_test.jsonl").exists():
        pytest.skip("../shared/data not present")
    _, instruct = make_pair("llama", True, max_positions=4096)
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


def test_decoding_ignores_the_models_generation_config(make_pair, tokenizer):
    """Greedy answers are the plain argmax whatever generation_config.json holds (repetition penalty, n-gram bans)."""
    from gift.generate import generate_hf
    from gift.model import load_model

    _, instruct = make_pair()
    model = load_model(str(instruct))
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"Tom has {a} apples"}], tokenize=False,
                                             add_generation_prompt=True) for a in range(4)]
    plain = generate_hf(model, tokenizer, prompts, 1, 0.0, 1.0, 12, 4, 0)[0]
    model.generation_config.repetition_penalty = 3.0
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.top_k = 1
    assert generate_hf(model, tokenizer, prompts, 1, 0.0, 1.0, 12, 4, 0)[0] == plain
    assert model.generation_config.repetition_penalty == 3.0  # the model's own config is left as it was
    for prompt, (text,) in zip(prompts, plain):  # and greedy is the argmax, token by token
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        out = []
        for _ in range(12):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        assert tokenizer.decode(out, skip_special_tokens=True).strip() == text


def test_samples_depend_on_the_problem_not_on_its_batch(make_pair, tokenizer):
    """A problem's samples are the same whatever --limit or --batch-size puts beside it."""
    from gift.generate import generate_hf
    from gift.model import load_model

    model = load_model(str(make_pair()[1]))
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": f"Tom has {a} apples and buys {b} more"}],
                                             tokenize=False, add_generation_prompt=True) for a in range(5) for b in range(2)]
    full = generate_hf(model, tokenizer, prompts, 3, 1.0, 0.9, 10, 7, seed=3)[0]
    assert generate_hf(model, tokenizer, prompts[:4], 3, 1.0, 0.9, 10, 2, seed=3)[0] == full[:4]
    assert len({s for row in full for s in row}) > len(prompts)  # real sampling: samples differ
    assert generate_hf(model, tokenizer, prompts, 3, 1.0, 0.9, 10, 7, seed=4)[0] != full


def test_benchmark_entries_carry_their_own_kind_and_instruction(tmp_path):
    from gift.benchmarks import STEP_BY_STEP, from_spec

    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Say a", "answer": "a"}])
    plain = from_spec({"name": "copy", "file": str(path), "kind": "exact", "instruction": ""})
    assert (plain.name, plain.problems[0].kind, plain.problems[0].question) == ("copy", "exact", "Say a")
    suffixed = from_spec(f"{path}:math")
    assert suffixed.problems[0].kind == "math" and suffixed.problems[0].question.endswith(STEP_BY_STEP)
    assert from_spec(str(path), kind="exact").problems[0].kind == "exact"


def test_paper_math_group_is_the_unweighted_mean_of_its_five_members(make_pair, tmp_path):
    from gift.benchmarks import GROUPS
    for member in GROUPS["paper_math"]:
        shared_file({"math500": "math500_test.jsonl", "minerva_math": "minerva_math_test.jsonl",
                     "olympiadbench": "olympiadbench_test.jsonl", "aime24": "aime24_test.jsonl",
                     "amc23": "amc23_test.jsonl"}[member])
    _, instruct = make_pair("llama", True, max_positions=4096)
    out = run_eval(instruct, tmp_path / "ev", "paper_math", "math500", limit=3, samples=2)
    results = json.loads((out / "results.json").read_text())
    assert list(results["benchmarks"]) == list(GROUPS["paper_math"])  # expanded in order, math500 once
    group = results["groups"]["paper_math"]
    for m in ("accuracy", "avg@2", "pass@2"):
        means = [results["benchmarks"][b]["metrics"][m]["value"] for b in GROUPS["paper_math"]]
        assert group[f"{m},none"] == pytest.approx(sum(means) / 5)
        assert group[f"{m}_ci95,none"][0] <= group[f"{m},none"] <= group[f"{m}_ci95,none"][1]
