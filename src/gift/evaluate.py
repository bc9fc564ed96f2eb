"""gift eval: generate, grade and aggregate on math, knowledge and instruction-following benchmarks.

Every benchmark gets a greedy pass (accuracy); with --samples k > 1 also k samples at --temperature,
from which Avg@k, maj@k and unbiased pass@k are computed. Writes results.json (metrics with 95% CIs
and the exact settings), samples.jsonl (every completion, extracted answer, verdict) and scaling.png.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .atomic import atomic_dir, check_out_dir, staging_dir, write_text_atomic
from .benchmarks import (
    GROUPS,
    INSTRUCTION_KINDS,
    LETTERS,
    Benchmark,
    Problem,
    exact_equal,
    expand_groups,
    from_spec,
    load_benchmark,
)
from .config import EvalConfig, ScoreConfig, to_dict
from .data import IGNORE, Encoded, TemplateOptions, pad_batch, read_jsonl, render
from .errors import GiftError
from .generate import generate_hf
from .grading import extract_answer, extract_choice, grade_answer, grade_math, normalise, options_of, reference_answer
from .instructions import METRICS, NEEDS_TAGGER, aggregate, follow
from .loss import GoldLogprobs
from .metrics import group_metric, metric, scaling_metrics
from .plots import scaling_plot
from .serve import Candidate, Served, server


def verdict(problem: Problem, completion: str) -> tuple[str | None, bool, bool]:
    """(normalised extracted answer, correct, whether the answer was stated rather than read by the last-number
    fallback) for one completion."""
    if problem.kind == "choice":
        options = options_of(problem.question) or None
        letter = extract_choice(completion, options)
        return letter, grade_answer(completion, problem.reference, "choice", options), letter is not None
    if problem.kind == "exact":
        return normalise(completion), exact_equal(completion, problem.reference), True
    answer, correct = grade_math(completion, problem.reference)
    return (normalise(answer) if answer else None), correct, extract_answer(completion) is not None


def composition(problems: list[Problem], completions: list[str], verdicts: list[tuple[str | None, bool, bool]],
                capped: list[bool] | None) -> dict[str, float | None]:
    """What a benchmark's score is made of, as shares of its answers: none extracted, cut at the token cap (None
    when unknown), read only by the last-number fallback, and the accuracy without that fallback; for exact match,
    failures of format (the reference is in the completion, with other words around it: the training data's style
    leaking) and of content (it is not)."""
    n = len(verdicts)
    out: dict[str, float | None] = {
        "unanswered": sum(a is None for a, _, _ in verdicts) / n,
        "capped": sum(capped) / n if capped is not None else None,
        "fallback_only": sum(a is not None and not stated for a, _, stated in verdicts) / n,
        "accuracy_without_fallback": sum(ok and stated for _, ok, stated in verdicts) / n}
    if problems[0].kind == "exact":
        inside = [not ok and f" {normalise_words(p.reference)} " in f" {normalise_words(c)} "
                  for p, c, (_, ok, _) in zip(problems, completions, verdicts)]
        out["format_failures"] = sum(inside) / n
        out["content_failures"] = sum(not ok for _, ok, _ in verdicts) / n - out["format_failures"]
    return out


def normalise_words(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def render_prompts(tokenizer: Any, problems: list[Problem], system_prompt: str | None) -> list[str]:
    if not getattr(tokenizer, "chat_template", None):
        raise GiftError("the model's tokenizer has no chat template; evaluate an instruct or merged model")
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [render(tokenizer, system + [{"role": "user", "content": p.question}], TemplateOptions(),
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


def context_cap(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, name: str) -> int:
    """--max-new-tokens, lowered (with a notice) so that the longest prompt plus its completion fits the context."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not context:
        return max_new_tokens
    longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"])
    if longest + max_new_tokens <= context:
        return max_new_tokens
    if longest >= context:
        raise GiftError(f"{name}: a prompt of {longest} tokens does not fit the model's context ({context} tokens)")
    print(f"gift: {name}: --max-new-tokens {max_new_tokens} lowered to {context - longest} (context {context} tokens, "
          f"longest prompt {longest})", file=sys.stderr)
    return context - longest


def generate(bench: Benchmark, prompts: list[str], served: Served, cfg: EvalConfig
             ) -> tuple[list[str], list[list[str]] | None, dict[str, Any], dict[str, list | None]]:
    """Greedy completions (or log-likelihood choices), cfg.samples sampled ones for answer-checked benchmarks
    that generate, the decoding settings used, and which completions were cut at the token cap."""
    model, tokenizer = served.model, served.tokenizer
    max_new = cfg.max_new_tokens if served.engine else context_cap(model, tokenizer, prompts, cfg.max_new_tokens,
                                                                   bench.name)

    def gen(n: int, temperature: float, desc: str) -> tuple[list[list[str]], list[list[bool]]]:
        if served.engine:
            return served.engine.generate(prompts, n, temperature, cfg.top_p, max_new, cfg.seed, served.lora)
        return generate_hf(model, tokenizer, prompts, n, temperature, cfg.top_p, max_new, cfg.batch_size,
                           cfg.seed, desc)

    kind = bench.problems[0].kind
    loglik = kind == "choice" and cfg.choice_mode == "loglik"
    if loglik:
        greedy, g_capped = choice_by_loglik(model, tokenizer, prompts, bench.problems, cfg.batch_size), None
    else:
        texts, cut = gen(1, 0.0, f"{bench.name} greedy")
        greedy, g_capped = [t[0] for t in texts], [c[0] for c in cut]
    # a log-likelihood-scored benchmark has no sampled answers (lm-eval's loglikelihood tasks neither), and
    # instruction following is scored on one response per prompt
    sample = cfg.samples > 1 and kind not in INSTRUCTION_KINDS and not loglik and cfg.sampled(bench.name)
    sampled, s_capped = gen(cfg.samples, cfg.temperature, f"{bench.name} x{cfg.samples}") if sample else (None, None)
    decoding = {"output_type": "loglikelihood" if loglik else "generate_until",
                "generation_kwargs": {"do_sample": False, "max_gen_toks": max_new, "until": "end of turn"},
                "sampling": {"n": cfg.samples, "temperature": cfg.temperature, "top_p": cfg.top_p} if sample else None}
    return greedy, sampled, decoding, {"greedy": g_capped, "sampled": s_capped}


def grade(bench: Benchmark, prompts: list[str], greedy: list[str] | None, sampled: list[list[str]] | None,
          seed: int, warn: bool = True, capped: dict[str, list | None] | None = None) -> tuple[dict, list]:
    """Metrics (value, 95% CI, per-problem scores) and one record per problem, from completions made anywhere;
    `warn` prints a warning when most completions have no answer (experiments leave that to their report)."""
    kind = bench.problems[0].kind
    if kind in INSTRUCTION_KINDS:
        if greedy is None:
            raise GiftError(f"{bench.name}: instruction following is scored on one response per prompt")
        verdicts = [follow(kind, p.question, p.checks, g) for p, g in zip(bench.problems, greedy)]
        scores, per_id, unscored = aggregate(verdicts)
        records = [{"benchmark": bench.name, "id": p.id, "prompt": prompt, "greedy": g,
                    "checks": [{**c, **v} for c, v in zip(p.checks, vs)]}
                   for p, prompt, g, vs in zip(bench.problems, prompts, greedy, verdicts)]
        if unscored:
            print(f"gift: {bench.name}: {unscored} instruction(s) left unscored (nltk's POS tagger is not installed: "
                  f"{', '.join(sorted(NEEDS_TAGGER))})", file=sys.stderr)
        return {"problems": len(bench.problems), "samples": 1, "metrics": {m: metric(scores[m], seed) for m in METRICS},
                "per_instruction": per_id, "unscored_instructions": unscored}, records
    metrics: dict[str, Any] = {}
    made: dict[str, dict] = {}  # what the greedy and the sampled scores are made of
    capped = capped or {}
    g_verdicts = [verdict(p, g) for p, g in zip(bench.problems, greedy)] if greedy is not None else None
    if g_verdicts is not None:
        metrics["accuracy"] = metric(np.array([ok for _, ok, _ in g_verdicts], float), seed)
        made["greedy"] = composition(bench.problems, greedy, g_verdicts, capped.get("greedy"))
        if warn:
            warn_unanswered(bench.name, greedy, [a for a, _, _ in g_verdicts])
    s_verdicts = None
    if sampled is not None:
        s_verdicts = [[verdict(p, c) for c in cs] for p, cs in zip(bench.problems, sampled)]
        correct = np.array([[ok for _, ok, _ in vs] for vs in s_verdicts], bool)
        metrics.update(scaling_metrics(correct, [[a for a, _, _ in vs] for vs in s_verdicts], seed))
        flat = [(p, c, v) for p, cs, vs in zip(bench.problems, sampled, s_verdicts) for c, v in zip(cs, vs)]
        cut = capped.get("sampled")
        made["sampled"] = composition([p for p, _, _ in flat], [c for _, c, _ in flat], [v for _, _, v in flat],
                                      [x for row in cut for x in row] if cut is not None else None)
    records = []
    for i, (p, prompt) in enumerate(zip(bench.problems, prompts)):
        rec = {"benchmark": bench.name, "id": p.id, "prompt": prompt, "reference": reference_answer(p.reference)
               if p.kind == "math" else p.reference}
        if g_verdicts is not None:
            rec.update(greedy=greedy[i], greedy_answer=g_verdicts[i][0], greedy_correct=g_verdicts[i][1])
        if s_verdicts is not None:
            rec.update(samples=sampled[i], answers=[a for a, _, _ in s_verdicts[i]],
                       correct=[ok for _, ok, _ in s_verdicts[i]])
        records.append(rec)
    n = len(sampled[0]) if sampled else 1
    return {"problems": len(bench.problems), "samples": n, "metrics": metrics, "composition": made}, records


def warn_unanswered(name: str, completions: list[str], answers: list[str | None]) -> None:
    """Most completions without an extractable answer usually mean a wrong kind, instruction or length."""
    missing = sum(a is None for a in answers)
    if missing * 2 > len(answers):
        shown = "\n".join(f"  {c[:160]!r}" for c in completions[:3])
        print(f"gift: warning: {name}: no answer could be extracted from {missing} of {len(answers)} completions "
              f"(check the benchmark's kind, its instruction and --max-new-tokens); the first three:\n{shown}",
              file=sys.stderr)


def evaluate(cfg: EvalConfig, benches: list[Benchmark] | None = None, quiet: bool = False,
             served: Served | None = None) -> Path:
    """Evaluate cfg.model on cfg.bench (or on `benches`, already loaded, each with its own grading kind), or a
    candidate `served` by a loaded model or engine (gift run: cfg.model is then its label); `quiet` leaves the table
    to results.json (experiments print their own summary). Each benchmark's completions are kept in OUT.partial until
    the whole evaluation is published, so an interrupted run resumes."""
    if cfg.compare:
        return compare(cfg.compare, cfg.out, cfg.overwrite)
    t0 = time.time()
    out = check_out_dir(cfg.out, cfg.overwrite)
    benches = benches or [from_spec(b, cfg.limit, cfg.question_field, cfg.answer_field, cfg.kind,
                                    cfg.math_instruction, cfg.choice_instruction) for b in expand_groups(cfg.bench)]
    if served is None:
        with server(cfg.model, cfg, None, out).serve(Candidate()) as plain:
            return evaluate(cfg, benches, quiet, plain)
    tokenizer = served.tokenizer
    cache = staging_dir(out)
    graded: dict[str, tuple[Benchmark, dict, dict]] = {}
    records: list[dict] = []
    for bench in benches:
        prompts = render_prompts(tokenizer, bench.problems, cfg.system_prompt)
        # what the completions depend on (not --batch-size: each row's samples have their own seed)
        key = hashlib.sha256(json.dumps([cfg.model, prompts, cfg.samples, cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                                         cfg.seed, cfg.choice_mode, cfg.backend, cfg.dtype, cfg.sampled(bench.name)]
                                        ).encode()).hexdigest()
        cached = cache / f"{bench.name}.json"
        done = json.loads(cached.read_text()) if cached.is_file() else None
        if done and done["key"] == key:
            print(f"gift: {bench.name}: completions taken from {cached} (an interrupted run)", file=sys.stderr)
        else:
            greedy, sampled, decoding, capped = generate(bench, prompts, served, cfg)
            done = {"key": key, "greedy": greedy, "sampled": sampled, "decoding": decoding, "capped": capped}
            write_text_atomic(cached, json.dumps(done))
        result, recs = grade(bench, prompts, done["greedy"], done["sampled"], cfg.seed, warn=not quiet,
                             capped=done.get("capped"))
        graded[bench.name] = (bench, result, done["decoding"])
        records += recs
    report = lm_eval_report(graded, cfg, time.time() - t0)
    write_results(out, report, records, cfg.overwrite)
    shutil.rmtree(cache, ignore_errors=True)
    if not quiet:
        print(table({str(cfg.model): report["benchmarks"]}))
        for name, row in report["groups"].items():
            print(f"{name} (unweighted mean of {', '.join(row['members'])}): "
                  + ", ".join(f"{m} {row[f'{m},none']:.3f} [{row[f'{m}_ci95,none'][0]:.3f}, "
                              f"{row[f'{m}_ci95,none'][1]:.3f}]" for m in row["metrics"]))
        print(f"results: {out / 'results.json'} (samples: {out / 'samples.jsonl'}, plot: {out / 'scaling.png'})")
    return out


def write_results(out: Path, report: dict, records: list[dict], overwrite: bool) -> None:
    with atomic_dir(out, overwrite) as tmp:
        (tmp / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "samples.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        scaling_plot({str(report["config"]["model_args"]): report["benchmarks"]}, tmp / "scaling.png")


def lm_eval_report(graded: dict[str, tuple[Benchmark, dict, dict]], cfg: Any, seconds: float) -> dict[str, Any]:
    """results.json in the shape of lm-evaluation-harness's output (`results`, `configs`, `versions`, `n-shot`,
    `higher_is_better`, `n-samples`, `config`, `date`, library versions), with `<metric>,none`,
    `<metric>_stderr,none` (standard error of the mean, as lm-eval) and `<metric>_ci95,none` (bootstrap);
    `benchmarks` keeps gift's per-problem scores (for pooling over seeds) and IFEval's per-instruction accuracy."""
    import transformers

    results, configs = {}, {}
    for name, (bench, res, decoding) in graded.items():
        row: dict[str, Any] = {"alias": name}
        for m, v in res["metrics"].items():
            scores = np.asarray(v["scores"], float)
            row[f"{m},none"] = v["value"]
            # lm-eval's instruction-level aggregation has no stderr and reports N/A; gift's interval is `_ci95`
            row[f"{m}_stderr,none"] = float(scores.std(ddof=1) / np.sqrt(len(scores))) \
                if len(scores) > 1 and not m.startswith("inst_level_") else "N/A"
            row[f"{m}_ci95,none"] = v["ci"]
        results[name] = row
        configs[name] = {"task": name, "dataset_path": str(bench.source.resolve()) if bench.source else None,
                         "dataset_sha256": bench.sha256(), "kind": bench.problems[0].kind,
                         "doc_to_text": "{{question}}" + (f"\n{bench.instruction}" if bench.instruction else ""),
                         "system_prompt": getattr(cfg, "system_prompt", None), "chat_template": "the tokenizer's",
                         "num_fewshot": 0, "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                                           for m in res["metrics"]], **decoding}
    return {"results": results, "groups": group_rows(graded, cfg.seed), "configs": configs,
            "versions": {n: 1.0 for n in graded}, "n-shot": {n: 0 for n in graded},
            "higher_is_better": {n: {m: True for m in r["metrics"]} for n, (_, r, _) in graded.items()},
            "n-samples": {n: {"original": b.total, "effective": len(b.problems)} for n, (b, _, _) in graded.items()},
            "config": {"model": getattr(cfg, "backend", "responses"), "model_args": f"pretrained={cfg.model}",
                       "batch_size": getattr(cfg, "batch_size", None), "random_seed": cfg.seed},
            "date": time.time(), "gift_version": __version__, "transformers_version": transformers.__version__,
            "torch_version": torch.__version__, "total_evaluation_time_seconds": str(round(seconds, 1)),
            "settings": to_dict(cfg), "benchmarks": {n: r for n, (_, r, _) in graded.items()}}


def group_rows(graded: dict[str, tuple[Benchmark, dict, dict]], seed: int) -> dict[str, dict[str, Any]]:
    """lm-eval's `groups`: every group whose members were all evaluated, each metric they share as the unweighted
    mean of theirs with a stratified bootstrap interval (metrics.group_metric)."""
    out = {}
    for name, members in GROUPS.items():
        if not set(members) <= set(graded):
            continue
        shared = [m for m in graded[members[0]][1]["metrics"] if all(m in graded[b][1]["metrics"] for b in members)]
        row: dict[str, Any] = {"alias": name, "members": list(members), "metrics": shared}
        for m in shared:
            g = group_metric([graded[b][1]["metrics"][m]["scores"] for b in members], seed)
            row[f"{m},none"], row[f"{m}_ci95,none"] = g["value"], g["ci"]
        out[name] = row
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "results.json"
    if not f.is_file():
        raise GiftError(f"{path}: no results.json; pass directories written by gift eval")
    return json.loads(f.read_text())["benchmarks"]


def rows(runs: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, float, float, float]]:
    """(run, benchmark, metric, value, ci low, ci high): the headline metrics of every benchmark of every run."""
    out = []
    for label, benches in runs.items():
        for bench, res in benches.items():
            m = res["metrics"]
            last = max((int(k.split("@")[1]) for k in m if "@" in k), default=None)
            keys = [k for k in ("accuracy", *METRICS) if k in m]
            keys += [f"{n}@{last}" for n in ("avg", "maj", "pass")] if last else []
            out += [(label, bench, key, m[key]["value"], *m[key]["ci"]) for key in keys]
    return out


def table(runs: dict[str, dict[str, Any]]) -> str:
    """Plain-text table: one row per (run, benchmark, headline metric) with its 95% CI."""
    found = rows(runs)
    width = max([len("run"), *(len(r[0]) for r in found)])
    lines = [f"{'run':<{width}} {'benchmark':<16} {'metric':<24} {'value':>7}  95% CI"]
    lines += [f"{r:<{width}} {b:<16} {k:<24} {v:>7.3f}  [{lo:.3f}, {hi:.3f}]" for r, b, k, v, lo, hi in found]
    return "\n".join(lines)


def compare(dirs: list[str], out: str | None, overwrite: bool = False) -> Path:
    """Tabulate and plot several gift eval directories: compare.md, compare.csv and compare.png in `out`."""
    runs = {str(d): load_results(d) for d in dirs}
    folder = Path(out or ".")
    paths = [folder / f"compare.{ext}" for ext in ("png", "md", "csv")]
    clash = next((p for p in paths if p.exists()), None)
    if clash and not overwrite:
        raise GiftError(f"{clash} exists; pass --overwrite to replace it or choose another --out")
    print(table(runs))
    found = rows(runs)
    md = ["| run | benchmark | metric | value | 95% CI |", "|---|---|---|---|---|"]
    md += [f"| {r} | {b} | {k} | {v:.3f} | [{lo:.3f}, {hi:.3f}] |" for r, b, k, v, lo, hi in found]
    buf = io.StringIO()
    csv.writer(buf).writerows([("run", "benchmark", "metric", "value", "ci_low", "ci_high"), *found])
    write_text_atomic(paths[1], "\n".join(md) + "\n")
    write_text_atomic(paths[2], buf.getvalue())
    scaling_plot(runs, paths[0])
    print(f"compare: {paths[1]}, {paths[2]}, {paths[0]}")
    return paths[0]


def score(cfg: ScoreConfig) -> Path:
    """Grade completions made elsewhere (or a gift eval samples.jsonl) on one benchmark; writes what gift eval does."""
    t0 = time.time()
    out = check_out_dir(cfg.out, cfg.overwrite)
    bench = load_benchmark(cfg.bench, None, cfg.question_field, cfg.answer_field, cfg.kind, cfg.math_instruction,
                           cfg.choice_instruction)
    problems, prompts, greedy, sampled = match_responses(bench, Path(cfg.responses))
    if len(problems) < len(bench.problems):
        print(f"gift: {bench.name}: {cfg.responses} answers {len(problems)} of its {len(bench.problems)} problems; "
              f"scoring those", file=sys.stderr)
    bench = Benchmark(bench.name, problems, bench.source, bench.instruction, bench.total)
    result, records = grade(bench, prompts, greedy, sampled, cfg.seed)
    decoding = {"output_type": "generate_until", "generation_kwargs": f"as in {cfg.responses}", "sampling": None}
    report = lm_eval_report({bench.name: (bench, result, decoding)}, cfg, time.time() - t0)
    write_results(out, report, records, cfg.overwrite)
    print(table({cfg.responses: report["benchmarks"]}))
    print(f"results: {out / 'results.json'}")
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


def match_responses(bench: Benchmark, path: Path) -> tuple[list[Problem], list[str], list[str] | None,
                                                            list[list[str]] | None]:
    """Pair each row of a responses file with a problem: by `id`/`key` when it names one (a `prompt` beside it must
    hold that problem's question), else by prompt text (the question as the file has it, or with gift's instruction
    appended; a repeated text goes to its next unanswered problem). gift eval's samples.jsonl (`greedy`, `samples`,
    `benchmark`) is read as is. Unmatched, mismatched and duplicate rows are errors naming their line."""
    by_id = {p.id: p for p in bench.problems}
    by_text: dict[str, list[Problem]] = {}  # a text can repeat (MMLU-STEM asks 12 questions twice): in file order
    for p in bench.problems:
        for text in {_norm(p.question), _norm(p.raw)}:
            by_text.setdefault(text, []).append(p)
    seen: dict[str, int] = {}
    problems, prompts, greedy, sampled = [], [], [], []
    for line, row in read_jsonl(path):
        if "benchmark" in row and row["benchmark"] != bench.name:
            continue
        key, prompt = row.get("id", row.get("key")), row.get("prompt")
        prompt = prompt if isinstance(prompt, str) else None
        if key is not None:
            problem = by_id.get(str(key))
            stem = problem.raw.split("\n\n")[0] if problem is not None else ""  # MMLU: the question without options
            if problem is not None and prompt is not None and _norm(stem) not in _norm(prompt):
                raise GiftError(f"{path}:{line}: id {key!r} is problem {problem.id} of {bench.name}, but the row's prompt "
                                f"{prompt[:60]!r} is not that problem's; give the benchmark's ids, or drop `id` to match "
                                f"by prompt")
        else:
            candidates = by_text.get(_norm(prompt), []) if prompt is not None else []
            problem = next((p for p in candidates if p.id not in seen), candidates[-1] if candidates else None)
        if problem is None:
            raise GiftError(f"{path}:{line}: matches no problem of {bench.name} (id {key!r}, prompt "
                            f"{str(row.get('prompt', ''))[:60]!r})")
        if problem.id in seen:
            raise GiftError(f"{path}:{line}: answers problem {problem.id} of {bench.name} again (first on line "
                            f"{seen[problem.id]})")
        seen[problem.id] = line
        one, many = row.get("response", row.get("greedy")), row.get("responses", row.get("samples"))
        if not isinstance(one, str) and not (isinstance(many, list) and many and all(isinstance(x, str) for x in many)):
            raise GiftError(f"{path}:{line}: needs `response` (a string) or `responses` (a list of strings)")
        problems.append(problem)
        prompts.append(prompt if prompt is not None else problem.question)
        greedy.append(one)
        sampled.append(many)
    if not problems:
        raise GiftError(f"{path}: no rows for {bench.name}")
    has_one, has_many = [g is not None for g in greedy], [s is not None for s in sampled]
    for have, what in ((has_one, "response"), (has_many, "responses")):
        if any(have) and not all(have):
            raise GiftError(f"{path}: line {seen[problems[have.index(False)].id]} lacks `{what}`, which other rows have")
    if all(has_many) and len({len(s) for s in sampled}) > 1:
        counts = sorted({len(s) for s in sampled})
        raise GiftError(f"{path}: every row needs the same number of `responses` (found {counts})")
    return problems, prompts, greedy if all(has_one) else None, sampled if all(has_many) else None
