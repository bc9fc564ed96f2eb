"""gift eval: generate, grade and aggregate on math, knowledge and instruction-following benchmarks.

Every benchmark gets a greedy pass (accuracy); with --samples k > 1 also k samples at --temperature,
from which Avg@k, maj@k and unbiased pass@k are computed. Writes results.json (metrics with 95% CIs
and the exact settings), samples.jsonl (every completion, extracted answer, verdict) and scaling.png.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .atomic import atomic_dir, check_out_dir
from .benchmarks import LETTERS, Benchmark, Problem, exact_equal, load_benchmark
from .config import EvalConfig, to_dict
from .data import IGNORE, Encoded, pad_batch
from .errors import GiftError
from .generate import generate_hf, generate_vllm
from .grading import extract_choice, grade_answer, grade_math, normalise, reference_answer
from .ifeval_lite import followed
from .loss import GoldLogprobs
from .metrics import metric, scaling_metrics
from .model import load_model, load_tokenizer
from .plots import scaling_plot


def verdict(problem: Problem, completion: str) -> tuple[str | None, bool]:
    """(normalised extracted answer, correct) for one completion."""
    if problem.kind == "choice":
        return extract_choice(completion), grade_answer(completion, problem.reference, "choice")
    if problem.kind == "exact":
        return normalise(completion), exact_equal(completion, problem.reference)
    answer, correct = grade_math(completion, problem.reference)
    return (normalise(answer) if answer else None), correct


def render_prompts(tokenizer: Any, problems: list[Problem], system_prompt: str | None) -> list[str]:
    if not getattr(tokenizer, "chat_template", None):
        raise GiftError("the model's tokenizer has no chat template; evaluate an instruct or merged model")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [tokenizer.apply_chat_template(system + [{"role": "user", "content": p.question}], tokenize=False,
                                          add_generation_prompt=True) for p in problems]


@torch.inference_mode()
def choice_by_loglik(model: Any, tokenizer: Any, prompts: list[str], problems: list[Problem], batch_size: int) -> list[str]:
    """The option letter whose answer sentence is most likely after the prompt (lm-eval style)."""
    n_opts = [sum(1 for line in p.question.splitlines() if line[:2] in {f"{c}." for c in LETTERS}) for p in problems]
    missing = next((p for p, n in zip(problems, n_opts) if n < 2), None)
    if missing is not None:
        raise GiftError(f"problem {missing.id}: --choice-mode loglik needs the options on lines of their own ('A. …', "
                        f"'B. …'), or a `choices` list in the JSONL; found none in {missing.question[:60]!r}")
    rows, owners = [], []
    for i, (prompt, n) in enumerate(zip(prompts, n_opts)):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for letter in LETTERS[:n]:
            cont = tokenizer(f"The answer is {letter}.", add_special_tokens=False)["input_ids"]
            rows.append(Encoded(ids + cont, [IGNORE] * len(ids) + cont))
            owners.append((i, letter))
    scorer, device = GoldLogprobs(model), next(model.parameters()).device
    scores: dict[int, list[tuple[float, str]]] = {}
    for s in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in pad_batch(rows[s:s + batch_size], tokenizer.pad_token_id).items()}
        logp = scorer(**batch).cpu()
        counts = (batch["labels"][:, 1:] != IGNORE).sum(1).tolist()
        for (i, letter), total in zip(owners[s:s + batch_size], torch.split(logp, counts)):
            scores.setdefault(i, []).append((total.sum().item(), letter))
    return [f"The answer is {max(scores[i])[1]}." for i in range(len(prompts))]


def run_benchmark(bench: Benchmark, model: Any, tokenizer: Any, cfg: EvalConfig, model_path: str) -> tuple[dict, list]:
    prompts = render_prompts(tokenizer, bench.problems, cfg.system_prompt)

    def gen(n: int, temperature: float, desc: str) -> list[list[str]]:
        if cfg.backend == "vllm":
            return generate_vllm(model_path, prompts, n, temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed)
        return generate_hf(model, tokenizer, prompts, n, temperature, cfg.top_p, cfg.max_new_tokens, cfg.batch_size,
                           cfg.seed, desc)

    if bench.problems[0].kind == "choice" and cfg.choice_mode == "loglik":
        greedy = [[c] for c in choice_by_loglik(model, tokenizer, prompts, bench.problems, cfg.batch_size)]
    else:
        greedy = gen(1, 0.0, f"{bench.name} greedy")
    sampled = gen(cfg.samples, cfg.temperature, f"{bench.name} x{cfg.samples}") if cfg.samples > 1 else None
    records = []
    if bench.problems[0].kind == "ifeval":
        per_check = [[followed(g[0], c) for c in p.checks] for p, g in zip(bench.problems, greedy)]
        metrics = {"prompt_accuracy": metric(np.array([all(x) for x in per_check], float), cfg.seed),
                   "instruction_accuracy": metric(np.concatenate([np.array(x, float) for x in per_check]), cfg.seed)}
        for p, prompt, g, checks in zip(bench.problems, prompts, greedy, per_check):
            records.append({"benchmark": bench.name, "id": p.id, "prompt": prompt, "greedy": g[0],
                            "checks": [{**c, "followed": ok} for c, ok in zip(p.checks, checks)]})
        return {"problems": len(bench.problems), "samples": 1, "metrics": metrics}, records
    g_verdicts = [verdict(p, g[0]) for p, g in zip(bench.problems, greedy)]
    metrics = {"accuracy": metric(np.array([ok for _, ok in g_verdicts], float), cfg.seed)}
    s_verdicts = None
    if sampled is not None:
        s_verdicts = [[verdict(p, c) for c in cs] for p, cs in zip(bench.problems, sampled)]
        correct = np.array([[ok for _, ok in vs] for vs in s_verdicts], bool)
        metrics.update(scaling_metrics(correct, [[a for a, _ in vs] for vs in s_verdicts], cfg.seed))
    for i, (p, prompt) in enumerate(zip(bench.problems, prompts)):
        rec = {"benchmark": bench.name, "id": p.id, "prompt": prompt, "reference": reference_answer(p.reference)
               if p.kind == "math" else p.reference, "greedy": greedy[i][0], "greedy_answer": g_verdicts[i][0],
               "greedy_correct": g_verdicts[i][1]}
        if s_verdicts is not None:
            rec.update(samples=sampled[i], answers=[a for a, _ in s_verdicts[i]], correct=[ok for _, ok in s_verdicts[i]])
        records.append(rec)
    return {"problems": len(bench.problems), "samples": cfg.samples, "metrics": metrics}, records


def evaluate(cfg: EvalConfig, benches: list[Benchmark] | None = None, quiet: bool = False) -> Path:
    """Evaluate cfg.model on cfg.bench (or on `benches`, already loaded, each with its own grading kind);
    `quiet` leaves the table to results.json (experiments print their own summary)."""
    if cfg.compare:
        return compare(cfg.compare, cfg.out, cfg.overwrite)
    t0 = time.time()
    out = check_out_dir(cfg.out, cfg.overwrite)
    benches = benches or [load_benchmark(b, cfg.limit, cfg.question_field, cfg.answer_field, cfg.kind,
                                         cfg.math_instruction, cfg.choice_instruction) for b in cfg.bench]
    tokenizer = load_tokenizer(cfg.model)
    model = None
    if cfg.backend == "hf":
        model = load_model(cfg.model, cfg.dtype, cfg.trust_pickle)
        if torch.cuda.is_available():
            model.cuda()
    results, records = {}, []
    for bench in benches:
        results[bench.name], recs = run_benchmark(bench, model, tokenizer, cfg, cfg.model)
        records += recs
    decoding = {"greedy": "argmax of the logits; nothing from generation_config.json",
                "sampling": {"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": None, "repetition_penalty": 1.0,
                             "seeding": "one generator per (seed, prompt, sample)"} if cfg.samples > 1 else None}
    report = {"gift_version": __version__, "model": cfg.model, "settings": to_dict(cfg), "decoding": decoding,
              "benchmarks": results,
              "seconds": round(time.time() - t0, 1)}
    with atomic_dir(out, cfg.overwrite) as tmp:
        (tmp / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "samples.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        scaling_plot({cfg.model: results}, tmp / "scaling.png")
    if not quiet:
        print(table({str(cfg.model): results}))
        print(f"results: {out / 'results.json'}")
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "results.json"
    if not f.is_file():
        raise GiftError(f"{path}: no results.json; pass directories written by gift eval")
    return json.loads(f.read_text())["benchmarks"]


def table(runs: dict[str, dict[str, Any]]) -> str:
    """Plain-text table: one row per (run, benchmark), the headline metrics as columns with 95% CIs."""
    lines = [f"{'run':<28} {'benchmark':<16} {'metric':<22} {'value':>7}  95% CI"]
    for label, benches in runs.items():
        for bench, res in benches.items():
            m = res["metrics"]
            last = max((int(k.split("@")[1]) for k in m if "@" in k), default=None)
            keys = [k for k in ("accuracy", "prompt_accuracy", "instruction_accuracy") if k in m]
            keys += [f"{n}@{last}" for n in ("avg", "maj", "pass")] if last else []
            for key in keys:
                lo, hi = m[key]["ci"]
                lines.append(f"{label[-28:]:<28} {bench:<16} {key:<22} {m[key]['value']:>7.3f}  [{lo:.3f}, {hi:.3f}]")
    return "\n".join(lines)


def compare(dirs: list[str], out: str | None, overwrite: bool = False) -> Path:
    runs = {str(d): load_results(d) for d in dirs}
    path = Path(out or ".") / "compare.png"
    if path.exists() and not overwrite:
        raise GiftError(f"{path} exists; pass --overwrite to replace it or choose another --out")
    print(table(runs))
    path.parent.mkdir(parents=True, exist_ok=True)
    scaling_plot(runs, path)
    print(f"scaling plot -> {path}")
    return path
