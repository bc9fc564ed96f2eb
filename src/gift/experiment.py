"""gift run: one experiment = a base/instruct pair, task data, methods × seeds, evaluation, report.

Each stage (annotation, adapter, merged model, evaluation) is an atomic directory under OUT, so a killed
experiment resumes without redoing finished stages, and an interrupted training stage continues from
its checkpoint. Relative paths in the YAML are relative to the YAML file.

Methods (the paper's baselines and GIFT):
  base          the untouched base model (a reference point: what instruction tuning added)
  instruct      the untouched instruct model
  instruct-sft  LoRA directly on instruct (uniform weights)
  shadow-ft     LoRA on base (uniform weights), merged into instruct
  gift-baset    LoRA on base weighted by the base model's own confidences, merged into instruct
  gift          LoRA on base weighted by the instruct model's confidences, merged into instruct
  dft, rho      the same transfer with DFT or Rho-1 weighting (rho uses the instruct annotation)
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .annotate import annotate
from .atomic import write_text_atomic
from .benchmarks import Benchmark, from_spec
from .config import (
    AnnotateConfig,
    CheckConfig,
    EvalConfig,
    MergeConfig,
    TrainConfig,
    arg,
    build,
    load_yaml,
    resolve_paths,
    to_dict,
)
from .data import load_examples
from .diagnose import check_pair
from .errors import GiftError
from .evaluate import evaluate
from .merge import merge
from .metrics import seed_problem_ci
from .model import content_sha256, load_config, model_shape, shape_mismatch
from .report import headline, write_report
from .train import LAYOUT_KEYS, LOG, train

# method -> (model trained, teacher of the annotation or None, weighting)
METHODS: dict[str, tuple[str, str | None, str] | None] = {
    "base": None,
    "instruct": None,
    "instruct-sft": ("instruct", "instruct", "sft"),
    "shadow-ft": ("base", "instruct", "sft"),
    "gift-baset": ("base", "base", "gift"),
    "gift": ("base", "instruct", "gift"),
    "dft": ("base", "instruct", "dft"),
    "rho": ("base", "instruct", "rho"),
}


def role(spec: dict[str, Any]) -> str:
    """A run config benchmark's role: task (the default), retention or dev."""
    return spec.get("role", "task")


@dataclass
class RunConfig:
    base: str = arg(None, "base model", required=True)
    instruct: str = arg(None, "instruct model", required=True)
    train_data: str = arg(None, "training JSONL", required=True)
    benchmarks: list[dict[str, Any]] = arg([], "each {name, file or builtin, kind, answer_field, role: task|retention}")
    out: str = arg("runs/experiment", "experiment directory")
    methods: list[str] = arg(["instruct", "instruct-sft", "shadow-ft", "gift-baset", "gift"], "methods to compare")
    seeds: list[int] = arg([0], "training and sampling seeds")
    annotate: dict[str, Any] = arg({}, "gift annotate settings")
    train: dict[str, Any] = arg({}, "gift train settings shared by every method")
    eval: dict[str, Any] = arg({}, "gift eval settings")
    gamma_sweep: list[float] = arg([], "GIFT exponents γ to try on the dev benchmarks (role: dev); the best is used")
    scale_sweep: list[float] = arg([], "merge scales λ to try for gift on the dev benchmarks; the best is used")
    frontier: list[float] = arg([], "merge scales λ at which every transfer method's adapters are also merged and "
                                    "evaluated on test: the trade-off frontier (λ = 0 is the untouched instruct model)")
    frontier_seeds: list[int] = arg([], "seeds of the frontier (default: all)")

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise GiftError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not self.benchmarks:
            raise GiftError("the run config lists no benchmarks")
        if any(x <= 0 for x in self.frontier) or set(self.frontier_seeds) - set(self.seeds):
            raise GiftError("frontier: scales must be positive (λ = 0 is the instruct model, always drawn) and "
                            "frontier_seeds a subset of seeds")
        if self.frontier and not {"task", "retention"} <= {role(b) for b in self.benchmarks}:
            raise GiftError("frontier: needs a task and a retention benchmark (its two axes)")


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a run YAML; relative paths in it are taken relative to the file."""
    path = Path(path)
    values = load_yaml(path)
    values.update(overrides or {})
    root = path.resolve().parent
    for key in ("base", "instruct", "train_data"):
        if key in values:
            values[key] = resolve_paths(key, values[key], root)
    values["benchmarks"] = [{**b, "file": resolve_paths("file", b["file"], root)} if "file" in b else b
                            for b in values.get("benchmarks", [])]
    return build(RunConfig, values)


BENCH_SETTINGS = ("question_field", "answer_field", "kind", "math_instruction", "choice_instruction")  # of `eval:`


def load_benchmarks(cfg: RunConfig, roles: set[str]) -> list[Benchmark]:
    """The benchmarks of these roles, read with the `eval:` block's benchmark settings (a benchmark's own keys win)."""
    settings = {k: cfg.eval[k] for k in BENCH_SETTINGS if k in cfg.eval}
    return [from_spec(spec, cfg.eval.get("limit"), **settings) for spec in cfg.benchmarks
            if role(spec) in roles]


def content(cfg: RunConfig, benches: list[Benchmark]) -> dict[str, Any]:
    """What the stages were computed from, by content, so that a file rewritten or a model replaced at the same
    path is told apart from the one the cache holds (paths alone would reuse stale stages)."""
    return {"train_data": hashlib.sha256(Path(cfg.train_data).read_bytes()).hexdigest(),
            "base": content_sha256(cfg.base), "instruct": content_sha256(cfg.instruct),
            "benchmarks": {b.name: b.sha256() for b in benches}}


def done(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


class Experiment:
    def __init__(self, cfg: RunConfig):
        self.cfg, self.out = cfg, Path(cfg.out)
        self.models = {"base": cfg.base, "instruct": cfg.instruct}

    def check(self) -> None:
        """Everything that can be wrong before compute is spent: the pair, the data, the benchmarks, OUT."""
        problem = shape_mismatch(model_shape(load_config(self.cfg.base)), model_shape(load_config(self.cfg.instruct)),
                                 "base", "instruct")
        if problem:
            raise GiftError(f"base {self.cfg.base} and instruct {self.cfg.instruct} are not a pair: {problem}")
        required = {AnnotateConfig: {"teacher": "-", "data": "-", "out": "-"},
                    TrainConfig: {"model": "-", "data": "-", "out": "-"}, EvalConfig: {"model": "-", "out": "-",
                                                                                   "bench": ["-"]}}
        for block, cls in (("annotate", AnnotateConfig), ("train", TrainConfig), ("eval", EvalConfig)):
            try:  # unknown keys are refused here, in one line, rather than ignored or crashing a later stage
                build(cls, {**required[cls], **getattr(self.cfg, block)})
            except GiftError as e:
                raise GiftError(f"the run config's `{block}:` block: {e}") from None
        load_examples(self.cfg.train_data, self.cfg.annotate.get("prompt_field"), self.cfg.annotate.get("response_field"))
        benches = load_benchmarks(self.cfg, {"task", "retention", "dev"})
        settings = {**self.cfg.__dict__, "content": content(self.cfg, benches)}
        saved = self.out / "run_config.yaml"
        if saved.exists():
            changed = changed_setting(yaml.safe_load(saved.read_text()), settings)
            if changed:
                raise GiftError(f"{self.out} was run with {changed}; seeds and methods can be added to an experiment, "
                                f"`eval:` redone, shared settings and inputs cannot change: use another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(saved, yaml.safe_dump(settings, sort_keys=True))

    def pair_check(self) -> dict[str, Any]:
        """gift check-pair on the pair and the instruct annotation, the first stage: its errors stop the run before
        any training, its warnings open the report."""
        path = self.out / "check"
        if not done(path):
            teacher = any(METHODS[m] and METHODS[m][1] == "instruct" for m in self.cfg.methods)
            check_pair(CheckConfig(base=self.cfg.base, instruct=self.cfg.instruct, out=str(path),
                                   data=str(self.annotation("instruct")) if teacher else None), quiet=True)
        return json.loads((path / "check.json").read_text())

    def annotation(self, teacher: str) -> Path:
        path = self.out / "annotations" / teacher
        if not done(path):
            annotate(AnnotateConfig(teacher=self.models[teacher], data=self.cfg.train_data, out=str(path),
                                    **self.cfg.annotate))
        return path

    def variant(self, method: str, seed: int, gamma: float | None, scale: float) -> str:
        """A stage's name: method, GIFT exponent and merge scale when not the defaults, seed."""
        g = "" if gamma is None or gamma == self.cfg.train.get("gamma", 1.0) else f"-g{gamma:g}"
        return f"{method}{g}-s{seed}" + ("" if scale == 1.0 else f"-x{scale:g}")

    def adapter(self, method: str, seed: int, gamma: float | None = None) -> Path:
        trained, teacher, weighting = METHODS[method]
        path = self.out / "adapters" / self.variant(method, seed, gamma, 1.0)
        if not done(path):
            partial = path.with_name(path.name + ".partial") / "checkpoint"
            settings = {**self.cfg.train, **({"gamma": gamma} if gamma is not None else {})}
            train(TrainConfig(model=self.models[trained], data=str(self.annotation(teacher)), out=str(path),
                              method=weighting, seed=seed, resume=partial.is_dir(), **settings))
        return path

    def model(self, method: str, seed: int, gamma: float | None = None, scale: float = 1.0) -> str:
        if METHODS[method] is None:
            return self.models[method]
        path = self.out / "models" / self.variant(method, seed, gamma, scale)
        if not done(path):
            merge(MergeConfig(instruct=self.cfg.instruct, adapter=str(self.adapter(method, seed, gamma)), out=str(path),
                              scale=scale))
        return str(path)

    def evaluation(self, method: str, seed: int, benches: list[Benchmark], gamma: float | None = None,
                   scale: float = 1.0, tag: str = "", greedy: bool = False) -> dict:
        path = self.out / "evals" / (self.variant(method, seed, gamma, scale) + tag)
        tasks = [b["name"] for b in self.cfg.benchmarks if role(b) == "task"]
        settings = {"samples": 1, **self.cfg.eval, "seed": seed, "sample_bench": tasks} | \
            ({"samples": 1} if greedy else {})
        wanted = to_dict(EvalConfig(model="-", bench=["-"], out=str(path), **settings))
        found = json.loads((path / "results.json").read_text()) if done(path) else None
        stale = found is not None and any(found["settings"].get(k) != v for k, v in wanted.items()
                                          if k not in ("model", "bench", "overwrite"))
        if found is None or stale:  # an evaluation under other settings is redone from the same merged model
            evaluate(EvalConfig(model=self.model(method, seed, gamma, scale), bench=[b.name for b in benches],
                                out=str(path), overwrite=stale, **settings), benches, quiet=True)
            found = json.loads((path / "results.json").read_text())
        return found["benchmarks"]

    def tune_gift(self) -> dict[str, Any]:
        """γ, then λ, for gift chosen on the dev benchmarks with the first seed, as a user would: the mean dev
        accuracy (greedy) decides, ties keep the published default (γ = 1, λ = 1)."""
        dev = load_benchmarks(self.cfg, {"dev"})
        seed, gamma, scale = self.cfg.seeds[0], self.cfg.train.get("gamma", 1.0), 1.0
        if not dev or "gift" not in self.cfg.methods or not (self.cfg.gamma_sweep or self.cfg.scale_sweep):
            return {"gamma": gamma, "scale": scale, "gamma_sweep": {}, "scale_sweep": {}}

        def score(res: dict) -> float:  # each dev benchmark's headline metric (accuracy, or IFEval's prompt-level)
            return statistics.mean(r["metrics"][headline(r["metrics"])]["value"] for r in res.values())

        gammas = {g: self.evaluation("gift", seed, dev, g, 1.0, "-dev", greedy=True) for g in self.cfg.gamma_sweep}
        if gammas:
            gamma = max(gammas, key=lambda g: (score(gammas[g]), g == gamma))
        scales = {x: self.evaluation("gift", seed, dev, gamma, x, "-dev", greedy=True) for x in self.cfg.scale_sweep}
        if scales:
            scale = max(scales, key=lambda x: (score(scales[x]), x == 1.0))
        return {"gamma": gamma, "scale": scale, "gamma_sweep": gammas, "scale_sweep": scales}

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.check()
        pair_check = self.pair_check()
        benches = load_benchmarks(self.cfg, {"task", "retention"})
        tuned = self.tune_gift()
        per_seed: dict[str, dict[int, dict]] = {}
        for method in self.cfg.methods:
            for seed in self.cfg.seeds if METHODS[method] else self.cfg.seeds[:1]:
                print(f"== {method} (seed {seed})")
                gamma, scale = (tuned["gamma"], tuned["scale"]) if method == "gift" else (None, 1.0)
                per_seed.setdefault(method, {})[seed] = self.evaluation(method, seed, benches, gamma, scale)
        summary = {"check": pair_check["findings"], "methods": aggregate(per_seed),
                   "frontier": self.frontier(benches, tuned),
                   "signal": self.signal_shares(tuned["gamma"]), "tuned": tuned,
                   "roles": {b["name"]: role(b) for b in self.cfg.benchmarks},
                   "seeds": self.cfg.seeds, "out": str(self.out), "seconds": round(time.time() - t0, 1)}
        self.report(summary, per_seed)
        return summary

    def frontier(self, benches: list[Benchmark], tuned: dict[str, Any]) -> dict[str, dict[str, dict]]:
        """method -> λ -> benchmark -> metric: every transfer method's adapters merged at each frontier scale (no
        retraining), aggregated over the frontier's seeds as the main table is. Greedy only (the frontier reads
        accuracy); at a method's headline λ the main evaluation, sampled ones included, is reused."""
        seeds = self.cfg.frontier_seeds or self.cfg.seeds
        out: dict[str, dict[str, dict]] = {}
        for method in [m for m in self.cfg.methods if METHODS[m]]:
            g, main_scale = (tuned["gamma"], tuned["scale"]) if method == "gift" else (None, 1.0)
            for scale in sorted(set(self.cfg.frontier)):
                print(f"== frontier: {method} at λ = {scale:g}")
                main = scale == main_scale
                per_seed = {seed: self.evaluation(method, seed, benches, g, scale, "" if main else "-frontier",
                                                  greedy=not main) for seed in seeds}
                out.setdefault(method, {})[f"{scale:g}"] = aggregate({method: per_seed})[method]
        return out

    def signal_shares(self, gamma: float) -> dict[str, dict[str, float]]:
        """Per method, the share of weight and of weighted loss on tokens the instruct model gives q < 0.5."""
        out = {}
        for method in self.cfg.methods:
            g = gamma if method == "gift" else None
            logs = [self.out / "adapters" / self.variant(method, s, g, 1.0) / LOG for s in self.cfg.seeds]
            rows = [json.loads(line) for p in logs if p.exists() for line in p.read_text().splitlines()]
            rows = [r for r in rows if r["low_conf_loss_share"] is not None]
            if rows and METHODS[method] and METHODS[method][1] == "instruct":
                out[method] = {"weight_share": statistics.mean(r["low_conf_weight_share"] for r in rows),
                               "loss_share": statistics.mean(r["low_conf_loss_share"] for r in rows)}
        return out

    def report(self, summary: dict[str, Any], per_seed: dict[str, dict[int, dict]]) -> None:
        write_report(self.out, self.cfg, summary, per_seed, {t: self.annotation(t) for t in ("instruct", "base")
                                                             if done(self.out / "annotations" / t)})


# more of these reuse every finished stage; new `eval:` settings redo only the evaluations (Experiment.evaluation),
# new train.LAYOUT_KEYS change how a step is computed, not what; anything else changes what stages mean
GROWABLE = {"methods", "seeds", "frontier", "frontier_seeds", "eval"} | {f"train.{k}" for k in LAYOUT_KEYS}


def changed_setting(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> str | None:
    """'train.lr=0.0002, now 0.001' for the first shared setting that differs, else None."""
    for key in sorted(set(before) | set(now)):
        old, new, name = before.get(key), now.get(key), prefix + key
        if name in GROWABLE:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            sub = changed_setting(old, new, name + ".")
            if sub:
                return sub
        elif old != new:
            return f"{name}={old!r}, now {new!r}"
    return None


def aggregate(per_seed: dict[str, dict[int, dict]]) -> dict[str, dict[str, dict[str, dict]]]:
    """method -> benchmark -> metric -> {value, ci, seeds}: the mean over seeds with a 95% interval from a
    bootstrap over seeds and, within each, over problems (`seed_problem_ci`)."""
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for method, seeds in per_seed.items():
        first = next(iter(seeds.values()))
        for bench in first:
            for metric in first[bench]["metrics"]:
                entries = [s[bench]["metrics"][metric] for s in seeds.values()]
                values = [e["value"] for e in entries]
                out.setdefault(method, {}).setdefault(bench, {})[metric] = {
                    "value": statistics.mean(values), "ci": list(seed_problem_ci([e["scores"] for e in entries])),
                    "seeds": values}
    return out


def run(config: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return Experiment(load_run_config(config, overrides)).run()
