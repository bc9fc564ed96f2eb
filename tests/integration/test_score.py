"""gift score: grading responses made elsewhere, for every kind of built-in benchmark, with clear refusals."""
from __future__ import annotations

import json

import pytest

from gift.benchmarks import LETTERS, find_file, load_benchmark
from gift.cli import main
from gift.errors import GiftError
from gift.evaluate import match_responses
from gift.instructions import NEEDS_TAGGER
from tests.conftest import SHARED_DATA, write_jsonl

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "gsm8k_test.jsonl").exists(), reason="../shared/data not present")


def rows_of(name: str, n: int) -> list[dict]:
    return [json.loads(line) for line in (SHARED_DATA / name).read_text().splitlines()[:n]]


def scored(tmp_path, bench: str, rows: list[dict], *extra: str) -> dict:
    path = write_jsonl(tmp_path / f"{bench}.jsonl", rows)
    assert main(["score", "--bench", bench, "--responses", str(path), "--out", str(tmp_path / bench), *extra]) == 0
    return json.loads((tmp_path / bench / "results.json").read_text())


def test_math_and_choice_benchmarks_by_prompt_text(tmp_path):
    gsm = rows_of("gsm8k_test.jsonl", 8)
    right = [{"prompt": r["question"], "response": f"So \\boxed{{{r['answer'].split('####')[1].strip()}}}."} for r in gsm]
    for r in right[6:]:
        r["response"] = "So \\boxed{-1}."
    report = scored(tmp_path, "gsm8k", right)
    assert report["results"]["gsm8k"]["accuracy,none"] == 0.75
    assert report["n-samples"]["gsm8k"] == {"original": 1319, "effective": 8}
    assert len(report["configs"]["gsm8k"]["dataset_sha256"]) == 64

    m500 = rows_of("math500_test.jsonl", 4)
    report = scored(tmp_path, "math500", [{"prompt": r["problem"], "responses": [f"\\boxed{{{r['answer']}}}", "\\boxed{x}"]}
                                          for r in m500])
    metrics = report["results"]["math500"]
    assert metrics["avg@2,none"] == 0.5 and metrics["pass@2,none"] == 1.0 and "accuracy,none" not in metrics

    mmlu = rows_of("mmlu_stem_test.jsonl", 6)
    report = scored(tmp_path, "mmlu_stem", [{"id": str(i), "response": f"\\boxed{{{LETTERS[r['answer']]}}}"}
                                            for i, r in enumerate(mmlu)])
    assert report["results"]["mmlu_stem"]["accuracy,none"] == 1.0


def test_ifbench_matches_if_verifiable_on_every_scorable_prompt(tmp_path):
    from if_verifiable import evaluate_output_for_sample
    from if_verifiable.types import IFBenchSample

    docs = [json.loads(line) for line in find_file("IFBench_test.jsonl").read_text().splitlines()[:30]]
    answers = ["Sure.", "THIS IS A RESPONSE IN CAPITALS WITH NO COMMAS", "one two three\n\nfour five six"]
    rows = [{"prompt": d["prompt"], "response": answers[i % 3]} for i, d in enumerate(docs)]
    report = scored(tmp_path, "ifbench", rows)
    samples = [json.loads(line) for line in (tmp_path / "ifbench" / "samples.jsonl").read_text().splitlines()]
    for d, s in zip(docs, samples):
        if set(d["instruction_id_list"]) & NEEDS_TAGGER:
            continue
        ref, _ = evaluate_output_for_sample("ifbench", IFBenchSample(d["key"], d["prompt"], d["instruction_id_list"],
                                                                     d["kwargs"]), s["greedy"])
        assert [(c["strict"], c["loose"]) for c in s["checks"]] == [(r.strict_pass, r.loose_pass) for r in ref]
    assert set(report["results"]["ifbench"]) >= {"prompt_level_strict_acc,none", "inst_level_loose_acc_stderr,none"}
    assert report["benchmarks"]["ifbench"]["per_instruction"]


def test_unmatched_and_duplicate_rows_are_refused(tmp_path):
    bench = load_benchmark("gsm8k", limit=3)
    q = bench.problems[0].raw
    with pytest.raises(GiftError, match=r"bad.jsonl:2: matches no problem of gsm8k"):
        match_responses(bench, write_jsonl(tmp_path / "bad.jsonl", [{"prompt": q, "response": "1"},
                                                                      {"prompt": "What is love?", "response": "1"}]))
    with pytest.raises(GiftError, match=r"dup.jsonl:2: answers problem 0 of gsm8k again \(first on line 1\)"):
        match_responses(bench, write_jsonl(tmp_path / "dup.jsonl", [{"prompt": q, "response": "1"},
                                                                      {"id": 0, "response": "2"}]))
    with pytest.raises(GiftError, match="needs `response`"):
        match_responses(bench, write_jsonl(tmp_path / "none.jsonl", [{"prompt": q, "answer": "1"}]))
    assert not (tmp_path / "out").exists()


def test_an_id_beside_a_prompt_must_name_the_same_problem(tmp_path):
    """Rows numbered by their own scheme (0-99 in another order) were matched by id alone to other problems."""
    bench = load_benchmark("gsm8k", limit=100)
    order = list(reversed(bench.problems))
    rows = [{"id": j, "prompt": p.raw, "response": f"\\boxed{{{p.reference}}}"} for j, p in enumerate(order)]
    with pytest.raises(GiftError, match=r"own.jsonl:1: id 0 is problem \S+ of gsm8k, but the row's prompt"):
        match_responses(bench, write_jsonl(tmp_path / "own.jsonl", rows))
    agreeing = [{"id": p.id, "prompt": p.question, "response": f"\\boxed{{{p.reference}}}"} for p in order]
    problems, _, _, _ = match_responses(bench, write_jsonl(tmp_path / "ok.jsonl", agreeing))
    assert [p.id for p in problems] == [p.id for p in order]
    report = scored(tmp_path, "gsm8k", [{k: v for k, v in r.items() if k != "id"} for r in rows])
    assert report["results"]["gsm8k"]["accuracy,none"] == 1.0  # the same rows matched by prompt: all correct


def test_repeated_questions_go_to_the_next_unanswered_problem(tmp_path):
    bench = load_benchmark("mmlu_stem")
    texts: dict[str, list] = {}
    for p in bench.problems:
        texts.setdefault(p.raw, []).append(p)
    repeated = [ps for ps in texts.values() if len(ps) > 1]
    assert len(repeated) >= 10  # MMLU-STEM asks some questions twice
    rows = [{"prompt": p.raw, "response": f"\\boxed{{{p.reference}}}"} for ps in repeated for p in ps]
    problems, _, _, _ = match_responses(bench, write_jsonl(tmp_path / "rep.jsonl", rows))
    assert [p.id for p in problems] == [p.id for ps in repeated for p in ps]
    with pytest.raises(GiftError, match="again"):
        match_responses(bench, write_jsonl(tmp_path / "thrice.jsonl", rows[:2] + rows[:1]))


def test_a_choice_file_in_mmlus_layout_shows_its_options_and_grades_letters(tmp_path):
    """`question`, a `choices` list and an integer `answer`, given as FILE:choice: graded 0% before (options unseen,
    the reference the integer); now laid out and mapped as the built-in MMLU reader does."""
    rows = [json.loads(line) for line in (SHARED_DATA / "mmlu_stem_test.jsonl").read_text().splitlines()[:6]]
    path = write_jsonl(tmp_path / "mine.jsonl", [{k: r[k] for k in ("question", "choices", "answer")} for r in rows])
    bench = load_benchmark(f"{path}:choice")
    builtin = load_benchmark("mmlu_stem", limit=6)
    assert [p.question for p in bench.problems] == [p.question for p in builtin.problems]
    assert [p.reference for p in bench.problems] == [LETTERS[r["answer"]] for r in rows]
    responses = write_jsonl(tmp_path / "resp.jsonl", [{"prompt": p.raw, "response": f"The answer is ({p.reference})."}
                                                       for p in bench.problems])
    assert main(["score", "--bench", f"{path}:choice", "--responses", str(responses), "--out", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "results.json").read_text())["results"]["mine"]["accuracy,none"] == 1.0
