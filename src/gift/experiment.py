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
  filter        Shadow-FT trained only on the rows the instruct model finds likeliest (--filter-keep)
  eaft, asft    the same transfer with LLaMA-Factory's EAFT (entropy-weighted) or ASFT (DFT + KL to base) loss

With a `select:` block every transfer method gets the same selection budget (its knob × the merge scale λ, λ = 0
being the instruct model itself), chosen on the dev benchmarks only (gift.selection); test is evaluated once per
method, at its chosen point, beside GIFT as published (γ 1, λ 1); differences come with paired intervals.

Candidates are served, not written (gift.serve): one loaded instruct model (or one vLLM engine) evaluates every
adapter at every λ, and only the recommended model is merged to disk (`merge_all` merges every candidate instead).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml

from .annotate import annotate
from .atomic import claim, write_text_atomic
from .benchmarks import Benchmark, from_spec
from .config import (
    AnnotateConfig,
    CheckConfig,
    EvalConfig,
    MergeConfig,
    SelectConfig,
    TrainConfig,
    arg,
    build,
    load_yaml,
    resolve_paths,
    to_dict,
)
from .data import load_examples, read_jsonl
from .diagnose import check_pair
from .errors import GiftError
from .evaluate import evaluate
from .merge import merge
from .metrics import paired_difference, seed_problem_ci
from .model import content_sha256, load_config, load_tokenizer, model_shape, shape_mismatch, weight_files
from .plan import PRESETS, Cost, Workload, cost, describe, human_bytes, lora_parameters, parameters
from .preconditions import BOUNDS, from_check
from .report import composite, headline, write_report
from .selection import Point, choose, recommend
from .serve import Candidate, HFServer, Served, VLLMServer, release_gpu, server, unservable
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
    "filter": ("base", "instruct", "sft"),
    "eaft": ("base", "instruct", "eaft"),
    "asft": ("base", "instruct", "asft"),
}
# the one training setting a method's selection searches (besides λ), and its stage-name prefix
KNOBS = {"gift": "gamma", "gift-baset": "gamma", "rho": "rho_ratio", "filter": "filter_keep", "eaft": "eaft_alpha",
         "asft": "asft_alpha"}
PREFIX = {"gamma": "g", "rho_ratio": "r", "filter_keep": "k", "eaft_alpha": "e", "asft_alpha": "a"}
TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
PUBLISHED = "gift-published"  # GIFT as published (γ 1, λ 1), reported beside the tuned gift
ROLES = ("task", "retention", "dev", "dev-retention")


def role(spec: dict[str, Any]) -> str:
    """A run config benchmark's role: task (the default), retention, dev (task accuracy on dev, which selection
    maximises) or dev-retention (retention on dev, which selection holds above its floor)."""
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
    select: dict[str, Any] = arg({}, "one selection budget for every transfer method, chosen on dev (SelectConfig: "
                                     "scales, gamma, rho_ratio, filter_keep, eaft_alpha, asft_alpha, retention_floor, "
                                     "retention_drop, seeds)")
    merge_all: bool = arg(False, "write every evaluated candidate as a merged model (gift ≤ 0.x's behaviour) instead "
                                 "of serving adapters on the loaded instruct model and merging only the shipped one")

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise GiftError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not self.benchmarks:
            raise GiftError("the run config lists no benchmarks")
        bad = next((b for b in self.benchmarks if role(b) not in ROLES), None)
        if bad is not None:
            raise GiftError(f"benchmark {bad.get('name')!r}: role {role(bad)!r}; choose from {', '.join(ROLES)}")
        if self.select:
            sc = self.selection()
            if not {"dev", "dev-retention"} <= {role(b) for b in self.benchmarks}:
                raise GiftError("select: needs dev benchmarks of both roles, dev (the task accuracy it maximises) and "
                                "dev-retention (the retention it holds above its floor)")
            if set(sc.seeds) - set(self.seeds) or "instruct" not in self.methods:
                raise GiftError("select: its seeds must be a subset of seeds, and methods must include instruct "
                                "(λ = 0 and the default floor are the instruct model's)")

    def selection(self) -> SelectConfig:
        try:
            return build(SelectConfig, {k.replace("-", "_"): v for k, v in self.select.items()})
        except GiftError as e:
            raise GiftError(f"the run config's `select:` block: {e}") from None


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


# `eval:` settings that change how completions are computed, not what they are: an evaluation made under other
# values is reused (each row's samples have their own seed, so the batch does not change them)
RESULT_NEUTRAL = {"model", "bench", "out", "overwrite", "batch_size", "gpu_memory_utilization", "max_model_len",
                  "tensor_parallel_size"}


def content(cfg: RunConfig, benches: list[Benchmark]) -> dict[str, Any]:
    """What the stages were computed from, by content, so that a file rewritten or a model replaced at the same
    path is told apart from the one the cache holds (paths alone would reuse stale stages)."""
    return {"train_data": hashlib.sha256(Path(cfg.train_data).read_bytes()).hexdigest(),
            "base": content_sha256(cfg.base), "instruct": content_sha256(cfg.instruct),
            "benchmarks": {b.name: b.sha256() for b in benches}}


def done(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def free_bytes(path: Path) -> int | None:
    """Free bytes on the disk that holds `path` (or its nearest existing parent)."""
    for folder in [path, *path.resolve().parents]:
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


class Experiment:
    def __init__(self, cfg: RunConfig):
        self.cfg, self.out = cfg, Path(cfg.out)
        self.locks = self.out / ".locks"  # one per stage output (atomic.claim): processes sharing OUT split stages
        self.models = {"base": cfg.base, "instruct": cfg.instruct}
        self._server: HFServer | VLLMServer | None = None

    @property
    def settings(self) -> EvalConfig:
        """The `eval:` block (checked by check())."""
        return build(EvalConfig, {"model": self.cfg.instruct, "bench": ["-"], "out": "-", **self.cfg.eval})

    def server(self) -> HFServer | VLLMServer:
        """The run's one loaded instruct model (HF) or engine (vLLM), started at its first evaluation."""
        if self._server is None:
            self._server = server(self.cfg.instruct, self.settings, self.cfg.train.get("rank", TRAIN_DEFAULTS["rank"]),
                                  self.out / "served")
        return self._server

    def close_server(self) -> None:
        """Release the loaded model or engine, before training (the GPU is the trainer's) or another model's engine."""
        if self._server is not None:
            self._server = None
            release_gpu()

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
        benches = load_benchmarks(self.cfg, set(ROLES))
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
        with claim(path, self.locks):
            if not done(path):
                teacher = any(METHODS[m] and METHODS[m][1] == "instruct" for m in self.cfg.methods)
                check_pair(CheckConfig(base=self.cfg.base, instruct=self.cfg.instruct, out=str(path),
                                       data=str(self.annotation("instruct")) if teacher else None), quiet=True)
        return json.loads((path / "check.json").read_text())

    def preconditions(self, pair_check: dict[str, Any]) -> dict[str, Any]:
        """Issue 44's P2-P5 (gift.preconditions.BOUNDS) where this run holds their inputs: P2-P4 from the pair check's
        data figures (with a teacher annotation), P5 from the first seed's Shadow-FT adapter (one more streamed pass
        over the pair's weights, cached in OUT/check-shadow-ft); each with its verdict."""
        pre = pair_check.get("data_figures", {}).get("preconditions")
        figures: dict[str, Any] = from_check(pre) if pre else {}
        adapter = self.adapter_path("shadow-ft", self.cfg.seeds[0])
        if "shadow-ft" in self.cfg.methods and done(adapter):
            path = self.out / "check-shadow-ft"
            with claim(path, self.locks):
                if not done(path):
                    check_pair(CheckConfig(base=self.cfg.base, instruct=self.cfg.instruct, adapter=str(adapter),
                                           out=str(path)), quiet=True)
            figures["P5"] = [json.loads((path / "check.json").read_text())["adapter"]["delta_over_tuning"]]
        measured = [p for p in BOUNDS if p in figures]
        return {**figures, "met": {p: bool(BOUNDS[p][0](figures)) for p in measured}} if measured else {}

    def annotation(self, teacher: str) -> Path:
        path = self.out / "annotations" / teacher
        with claim(path, self.locks):
            if not done(path):
                annotate(AnnotateConfig(teacher=self.models[teacher], data=self.cfg.train_data, out=str(path),
                                        **self.cfg.annotate))
        return path

    def default_knob(self, method: str) -> float | None:
        """The training setting a method's selection searches, at the run's (or TrainConfig's) default."""
        name = KNOBS.get(method)
        return self.cfg.train.get(name, TRAIN_DEFAULTS[name]) if name else None

    def variant(self, method: str, seed: int, knob: float | None, scale: float) -> str:
        """A stage's name: method, its knob and merge scale when not the defaults, seed."""
        k = "" if knob is None or knob == self.default_knob(method) else f"-{PREFIX[KNOBS[method]]}{knob:g}"
        return f"{method}{k}-s{seed}" + ("" if scale == 1.0 else f"-x{scale:g}")

    def adapter_path(self, method: str, seed: int, knob: float | None = None) -> Path:
        return self.out / "adapters" / self.variant(method, seed, knob, 1.0)

    def evaluation_path(self, method: str, seed: int, knob: float | None, scale: float, tag: str) -> Path:
        return self.out / "evals" / (self.variant(method, seed, knob, scale) + tag)

    def grid(self) -> list[tuple[str, float | None]]:
        """Every trained method with each knob value the selection searches (None for methods without a knob)."""
        sc = self.cfg.selection()
        return [(m, k) for m in self.cfg.methods if METHODS[m]
                for k in (getattr(sc, KNOBS[m]) if m in KNOBS else [None])]

    def adapter(self, method: str, seed: int, knob: float | None = None) -> Path:
        trained, teacher, weighting = METHODS[method]
        path = self.adapter_path(method, seed, knob)
        with claim(path, self.locks):
            if not done(path):
                self.close_server()
                partial = path.with_name(path.name + ".partial") / "checkpoint"
                settings = {**self.cfg.train, **({KNOBS[method]: knob} if knob is not None else {})}
                train(TrainConfig(model=self.models[trained], data=str(self.annotation(teacher)), out=str(path),
                                  method=weighting, seed=seed, resume=partial.is_dir(), **settings))
        return path

    def model(self, method: str, seed: int, knob: float | None = None, scale: float = 1.0) -> str:
        """A merged model directory (written once), or the untouched base / instruct model."""
        if METHODS[method] is None:
            return self.models[method]
        path = self.out / "models" / self.variant(method, seed, knob, scale)
        with claim(path, self.locks):
            if not done(path):
                merge(MergeConfig(instruct=self.cfg.instruct, adapter=str(self.adapter(method, seed, knob)),
                                  out=str(path), scale=scale))
        return str(path)

    def source(self, method: str, seed: int, knob: float | None, scale: float
               ) -> tuple[str, AbstractContextManager[Served | None]]:
        """What evaluates a candidate: the run's server with the adapter applied at λ (label, served context), or a
        model directory evaluate() loads itself (path, None): the base model, a merged copy under merge_all, or a
        merged copy where the backend cannot serve the adapter exactly (said in one line)."""
        if method == "instruct":
            return self.cfg.instruct, self.server().serve(Candidate())
        if METHODS[method] is None:
            self.close_server()  # one model (one engine) at a time
            return self.models[method], nullcontext()
        adapter = self.adapter(method, seed, knob)
        why = "merge_all" if self.cfg.merge_all else unservable(adapter, self.settings.backend)
        if why:
            if not self.cfg.merge_all:
                print(f"== {self.variant(method, seed, knob, scale)}: {why}; evaluated from a merged copy")
            self.close_server()
            return self.model(method, seed, knob, scale), nullcontext()
        return "", self.server().serve(Candidate(str(adapter), scale))

    def evaluation(self, method: str, seed: int, benches: list[Benchmark], knob: float | None = None,
                   scale: float = 1.0, tag: str = "", greedy: bool = False) -> dict:
        if METHODS[method] is not None and scale == 0:  # the instruct model's own evaluation
            return self.evaluation("instruct", self.cfg.seeds[0], benches, None, 1.0, tag, greedy)
        path = self.evaluation_path(method, seed, knob, scale, tag)
        tasks = [b["name"] for b in self.cfg.benchmarks if role(b) == "task"]
        settings = {"samples": 1, **self.cfg.eval, "seed": seed, "sample_bench": tasks} | \
            ({"samples": 1} if greedy else {})
        wanted = to_dict(EvalConfig(model="-", bench=["-"], out=str(path), **settings))
        with claim(path, self.locks):
            found = json.loads((path / "results.json").read_text()) if done(path) else None
            stale = found is not None and any(found["settings"].get(k) != v for k, v in wanted.items()
                                              if k not in RESULT_NEUTRAL)
            if found is None or stale:  # an evaluation under other settings is redone from the same candidate
                model, context = self.source(method, seed, knob, scale)
                with context as served:
                    evaluate(EvalConfig(model=served.label if served else model, bench=[b.name for b in benches],
                                        out=str(path), overwrite=stale, **settings), benches, quiet=True, served=served)
                found = json.loads((path / "results.json").read_text())
        return found["benchmarks"]

    def dev_stages(self) -> list[tuple[Path, Callable[[], Any]]]:
        """What selection computes, as (output, work): every training it needs, then every dev evaluation."""
        sc = self.cfg.selection()
        dev = load_benchmarks(self.cfg, {"dev", "dev-retention"})
        seeds = sc.seeds or self.cfg.seeds
        trainings = [(self.adapter_path(m, s, k), partial(self.adapter, m, s, k)) for m, k in self.grid() for s in seeds]
        points = [("instruct", seeds[0], None, 1.0)] + [(m, s, k, x) for m, k in self.grid() for x in sc.scales if x > 0
                                                        for s in seeds]
        return trainings + [(self.evaluation_path(m, s, k, x, "-dev"),
                             partial(self.evaluation, m, s, dev, k, x, "-dev", True)) for m, s, k, x in points]

    def shard(self, index: int, count: int) -> int:
        """This process's part of a run split over `count` processes sharing OUT (one per GPU): the trainings and dev
        evaluations selection needs, every count-th from `index` first, then any other no process has claimed (a
        stage another process holds is left to it). Returns how many stages it did; a last `gift run` without
        --shard waits for any still held, then selects, tests and ships from what they wrote."""
        if not self.cfg.select:
            raise GiftError("--shard splits a selection's trainings and dev evaluations; this config has no select: "
                            "block (run it without --shard)")
        self.check()
        self.require_disk()
        self.pair_check()
        stages = self.dev_stages()
        order = stages[index::count] + [s for j, s in enumerate(stages) if j % count != index]
        did = 0
        for path, work in order:
            with claim(path, self.locks, wait=False) as held:
                if held and not done(path):
                    work()
                    did += 1
        self.close_server()
        return did

    def ship(self, recommendation: dict[str, Any], seed: int) -> dict[str, Any] | None:
        """The recommended model merged to OUT/models (with its parity check and model card): the one model a run
        writes. None when the recommendation is the instruct model itself."""
        method = recommendation["method"]
        if method == "instruct" or METHODS[method] is None:
            return None
        knob = recommendation.get(KNOBS[method]) if method in KNOBS else None
        self.close_server()
        path = Path(self.model(method, seed, knob, recommendation["scale"]))
        record = json.loads((path / "gift_merge.json").read_text())
        return {"path": str(path), "seed": seed, "dtype": record["dtype"], "parity": record.get("parity"),
                "rounding_warning": record["rounding_warning"], "differs": record["rounding_warning"] is not None}

    def select(self) -> dict[str, Any]:
        """Every transfer method's knob × λ on the dev benchmarks (greedy, the mean over the selection seeds), the
        choice under the retention floor (gift.selection.choose) and the recommendation. Only dev is read here."""
        sc, cfg = self.cfg.selection(), self.cfg
        dev = load_benchmarks(cfg, {"dev", "dev-retention"})
        names = {r: [b["name"] for b in cfg.benchmarks if role(b) == r] for r in ("dev", "dev-retention")}
        seeds = sc.seeds or cfg.seeds

        def figures(method: str, knob: float | None, scale: float) -> tuple[float, float]:
            res = [{b: r["metrics"] for b, r in self.evaluation(method, s, dev, knob, scale, "-dev", greedy=True).items()}
                   for s in (seeds if METHODS[method] else seeds[:1])]
            return (statistics.mean(composite(r, names["dev"]) for r in res),
                    statistics.mean(composite(r, names["dev-retention"]) for r in res))

        for method, knob in self.grid():  # every adapter first: the GPU is then the server's
            for seed in seeds:
                self.adapter(method, seed, knob)
        start = Point({"scale": 0.0}, *figures("instruct", None, 1.0))
        floor = sc.retention_floor if sc.retention_floor is not None else start.retention - sc.retention_drop / 100
        chosen: dict[str, Point | None] = {}
        out: dict[str, Any] = {}
        for method in [m for m in cfg.methods if METHODS[m]]:
            name = KNOBS.get(method)
            points = [start]
            for knob in (getattr(sc, name) if name else [None]):
                for scale in [x for x in sc.scales if x > 0]:
                    print(f"== select: {method}" + (f" {name} {knob:g}" if name else "") + f" at λ {scale:g}")
                    points.append(Point({**({name: knob} if name else {}), "scale": scale}, *figures(method, knob, scale)))
            default = {**({name: self.default_knob(method)} if name else {}), "scale": 1.0}
            chosen[method] = choose(points, floor, default)
            out[method] = {"chosen": chosen[method].settings if chosen[method] else None, "default": default,
                           "dev": {"task": chosen[method].task, "retention": chosen[method].retention}
                           if chosen[method] else None,
                           "points": [{**p.settings, "task": p.task, "retention": p.retention} for p in points]}
        best = recommend(chosen, start)
        settings = {"scale": 0.0} if best == "instruct" else chosen[best].settings
        return {"floor": floor, "seeds": seeds, "instruct": {"task": start.task, "retention": start.retention},
                "methods": out, "recommendation": {"method": best, "gamma": settings.get("gamma"),
                                                   "scale": settings["scale"], **settings}}

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        self.check()
        self.require_disk()
        pair_check = self.pair_check()
        benches = load_benchmarks(self.cfg, {"task", "retention"})
        selection = self.select() if self.cfg.select else None  # dev only: test is read after this, once
        points, jobs = self.test_points(selection)
        for _, method, seed, knob, scale in jobs:  # every adapter first, as in select()
            if METHODS[method] and scale > 0:
                self.adapter(method, seed, knob)
        per_seed: dict[str, dict[int, dict]] = {}
        for name, method, seed, knob, scale in jobs:
            print(f"== {'gift as published, γ 1 at λ 1' if name == PUBLISHED else method} (seed {seed})")
            per_seed.setdefault(name, {})[seed] = self.evaluation(method, seed, benches, knob, scale)
        recommended = selection["recommendation"]["method"] if selection else None
        shipped = self.ship(selection["recommendation"], selection["seeds"][0]) if selection else None
        self.close_server()
        summary = {"check": pair_check["findings"], "preconditions": self.preconditions(pair_check),
                   "methods": aggregate(per_seed), "points": points,
                   "shipped": shipped,
                   "paired": paired(per_seed, recommended), "selection": selection,
                   "recommendation": selection["recommendation"] if selection else None,
                   "signal": self.signal_shares(points), "roles": {b["name"]: role(b) for b in self.cfg.benchmarks},
                   "seeds": self.cfg.seeds, "out": str(self.out), "seconds": round(time.time() - t0, 1)}
        self.report(summary, per_seed)
        return summary

    def workload(self) -> Workload:
        """The run's stages counted from its config (test evaluations and later trainings at most: they depend on
        what dev chooses), with the tokens each processes and what OUT already holds."""
        cfg, sc = self.cfg, self.cfg.selection() if self.cfg.select else None
        trained = [m for m in cfg.methods if METHODS[m]]
        teachers = {METHODS[m][1] for m in trained}
        tok = load_tokenizer(cfg.instruct)
        rows = [json.dumps(row, ensure_ascii=False) for _, row in read_jsonl(cfg.train_data)]
        data_tokens = sum(map(len, tok(rows, add_special_tokens=False)["input_ids"]))  # field names too: an overcount
        train = {**TRAIN_DEFAULTS, **cfg.train}
        per_training = data_tokens * train["epochs"] if not train["max_steps"] else min(
            data_tokens, train["max_steps"] * train["batch_size"] * train["grad_accum"] * data_tokens // len(rows))
        settings = self.settings
        count = {r: sum(len(b.problems) for b in load_benchmarks(cfg, {r})) for r in ROLES}
        dev_tokens = (count["dev"] + count["dev-retention"]) * settings.max_new_tokens
        test_tokens = (count["task"] * (1 + (settings.samples - 1 if settings.samples > 1 else 0)) + count["retention"]
                       ) * settings.max_new_tokens
        seeds = (sc.seeds or cfg.seeds) if sc else cfg.seeds
        later = len(set(cfg.seeds) - set(seeds))  # test seeds selection did not train
        knobs = {m: (len(getattr(sc, KNOBS[m])) if sc and m in KNOBS else 1) for m in trained}
        trainings = sum(knobs[m] * len(seeds) + later for m in trained) + (later if sc and "gift" in trained else 0)
        dev = 1 + sum(knobs[m] * len([x for x in sc.scales if x > 0]) * len(seeds) for m in trained) if sc else 0
        test = 1 + len(cfg.seeds) * (len(trained) + (1 if sc and "gift" in trained else 0)) + ("base" in cfg.methods)
        merges = (dev + test - 2) if cfg.merge_all else (1 if sc else 0)
        vllm = settings.backend == "vllm"
        starts = (dev + test if cfg.merge_all else 1 + bool(later)) if vllm else 0
        checked = "instruct" in teachers  # the pair check scores the data with the base model (its preconditions)
        loads = len(teachers) + checked + trainings + 2 * merges + ((dev + test) if cfg.merge_all else 1 + bool(later))
        finished = {"annotations": sum(done(self.out / "annotations" / t) for t in teachers),
                    "trainings": sum(done(p) for p in (self.out / "adapters").glob("*") if not p.name.endswith(".partial")),
                    "dev_evaluations": sum(done(p) for p in (self.out / "evals").glob("*-dev")),
                    "test_evaluations": sum(done(p) for p in (self.out / "evals").glob("*") if not p.name.endswith("-dev")),
                    "merges": sum(done(p) for p in (self.out / "models").glob("*"))}
        return Workload(len(teachers), data_tokens, trainings, int(per_training), dev, dev_tokens, test, test_tokens,
                        merges, settings.backend, starts, loads,
                        data_tokens if checked and not done(self.out / "check") else 0, finished)

    def cost(self, preset: str = "h100", rates: dict[str, float] | None = None) -> tuple[Cost, int, int]:
        """The run's cost from its config and the instruct model's shape, with the model's parameters and bytes."""
        config = load_config(self.cfg.instruct)
        shape = model_shape(config)
        params = parameters(shape, bool(getattr(config.get_text_config(), "tie_word_embeddings", False)))
        rates = {**PRESETS[preset], **(rates or {})}
        files = weight_files(self.cfg.instruct)
        model_bytes = sum(f.stat().st_size for f in files) if files else params * int(rates["param_bytes"])
        rank = self.cfg.train.get("rank", TRAIN_DEFAULTS["rank"])
        return cost(self.workload(), params, lora_parameters(shape, rank), model_bytes, rates), params, model_bytes

    def plan(self, preset: str = "h100", rates: dict[str, float] | None = None) -> tuple[Cost, str]:
        """The run's cost and the plan as text (`gift run --plan`)."""
        c, params, model_bytes = self.cost(preset, rates)
        size = next(f"{params / d:.{p}f}{u}" for d, u, p in ((1e9, "B", 2), (1e6, "M", 1), (1, "", 0)) if params >= d)
        how = "every candidate merged (merge_all)" if self.cfg.merge_all else \
            "candidates served, only the shipped model merged"
        head = (f"gift run {self.out}: {size}-parameter pair ({human_bytes(model_bytes)} a model), LoRA rank "
                f"{self.cfg.train.get('rank', TRAIN_DEFAULTS['rank'])}, {how}")
        return c, head + "\n" + describe(c, preset, free_bytes(self.out))

    def require_disk(self) -> None:
        """Refuse, in one line and before any compute, a run whose writes would not fit the free disk."""
        c, _, _ = self.cost("h100" if torch.cuda.is_available() else "cpu")
        need, free = sum(c.bytes.values()), free_bytes(self.out)
        if free is not None and need > free:
            raise GiftError(f"this run would write about {human_bytes(need)} under {self.out} and {human_bytes(free)} "
                            f"are free (gift run CONFIG --plan lists it); free space or choose another --out")

    def test_points(self, selection: dict[str, Any] | None
                    ) -> tuple[dict[str, dict[str, float]], list[tuple[str, str, int, float | None, float]]]:
        """Each method's point on test (its dev-chosen one, or λ 1 without selection) and the evaluations that read
        test: (name, method, seed, knob, λ), GIFT as published beside the tuned one."""
        points: dict[str, dict[str, float]] = {}
        jobs: list[tuple[str, str, int, float | None, float]] = []
        for method in self.cfg.methods:
            chosen = selection["methods"][method]["chosen"] if selection and METHODS[method] else None
            if selection and METHODS[method] and chosen is None:
                print(f"== {method}: no candidate keeps dev retention ≥ {selection['floor']:.3f}; not evaluated on test")
                continue
            knob = chosen.get(KNOBS[method]) if chosen and method in KNOBS else None
            scale = chosen["scale"] if chosen else 1.0
            points[method] = {**(chosen or {}), "scale": scale} if METHODS[method] else {}
            jobs += [(method, method, seed, knob, scale)
                     for seed in (self.cfg.seeds if METHODS[method] and scale > 0 else self.cfg.seeds[:1])]
        if selection and "gift" in points:
            points[PUBLISHED] = {"gamma": 1.0, "scale": 1.0}
            jobs += [(PUBLISHED, "gift", seed, 1.0, 1.0) for seed in self.cfg.seeds]
        return points, jobs

    def signal_shares(self, points: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Per method (its chosen knob), the share of weight and of weighted loss on tokens the instruct model gives
        q < 0.5."""
        out = {}
        for method, settings in points.items():
            base = "gift" if method == PUBLISHED else method
            if not METHODS.get(base) or METHODS[base][1] != "instruct" or settings.get("scale") == 0:
                continue  # no annotation by instruct, or a method that ships no adapter (λ 0 keeps instruct)
            knob = settings.get(KNOBS[base]) if base in KNOBS else None
            logs = [self.adapter_path(base, s, knob) / LOG for s in self.cfg.seeds]
            rows = [json.loads(line) for p in logs if p.exists() for line in p.read_text().splitlines()]
            rows = [r for r in rows if r["low_conf_loss_share"] is not None]
            if rows:
                out[method] = {"weight_share": statistics.mean(r["low_conf_weight_share"] for r in rows),
                               "loss_share": statistics.mean(r["low_conf_loss_share"] for r in rows)}
        return out

    def report(self, summary: dict[str, Any], per_seed: dict[str, dict[int, dict]]) -> None:
        write_report(self.out, self.cfg, summary, per_seed, {t: self.annotation(t) for t in ("instruct", "base")
                                                             if done(self.out / "annotations" / t)})


# more of these reuse every finished stage; new `eval:` settings redo only the evaluations (Experiment.evaluation),
# new train.LAYOUT_KEYS change how a step is computed, not what; anything else changes what stages mean
GROWABLE = {"methods", "seeds", "select", "eval", "merge_all"} | {f"train.{k}" for k in LAYOUT_KEYS}


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
    """method -> benchmark -> metric -> {value, ci, seeds}: the mean over seeds with a 95% t interval for the crossed
    seed × problem design (`seed_problem_ci`)."""
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


def paired(per_seed: dict[str, dict[int, dict]], recommended: str | None) -> dict[str, dict[str, dict]]:
    """method -> "instruct" / "recommended" -> benchmark -> metric -> paired difference (gift.metrics): the
    headline metric of every benchmark and the sampled Avg@k at the largest k, seeds paired by position, the instruct
    model's one evaluation set against every seed."""
    out: dict[str, dict[str, dict]] = {}
    for other, ref in (("instruct", "instruct"), ("recommended", recommended)):
        if ref not in per_seed or (other == "recommended" and ref == "instruct"):
            continue
        for method, seeds in per_seed.items():
            if method == ref:
                continue
            first = next(iter(seeds.values()))
            for bench, res in first.items():
                k = max((int(n.split("@")[1]) for n in res["metrics"] if n.startswith("avg@")), default=0)
                for metric in [headline(res["metrics"]), *([f"avg@{k}"] if k > 1 else [])]:
                    if metric not in next(iter(per_seed[ref].values()))[bench]["metrics"]:
                        continue
                    side = [[s[bench]["metrics"][metric]["scores"] for s in d.values()] for d in (seeds, per_seed[ref])]
                    out.setdefault(method, {}).setdefault(other, {}).setdefault(bench, {})[metric] = \
                        paired_difference(*side)
    return out


def run(config: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return Experiment(load_run_config(config, overrides)).run()
