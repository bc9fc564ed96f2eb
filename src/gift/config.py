"""One dataclass per command. Flags are generated from the fields (flag, YAML key and attribute are one
word); precedence is default < YAML (`--config`) < explicit flag. Cross-field checks live in __post_init__."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .combine import COMBINES
from .errors import GiftError
from .weighting import METHODS

ASSETS = Path(__file__).parent / "assets"
# gift demo's runs: the paper's regime (the default) and the bundled pair's first task
DEMOS = {"paper": ASSETS / "demo_paper.yaml", "math": ASSETS / "demo.yaml"}


def arg(default: Any = None, help: str = "", required: bool = False, choices: tuple | None = None) -> Any:
    meta = {"help": help, "required": required, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _require_finite(name: str, value: float, positive: bool = False) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        kind = "finite positive" if positive else "finite"
        raise GiftError(f"--{name.replace('_', '-')} must be a {kind} number, got {value!r}")


@dataclass
class TemplateArgs:
    """Shared by every command that formats prompts with a chat template."""

    system_prompt: str | None = arg(None, "system message prepended to every conversation")
    suffix: str | None = arg(None, "text appended to the last user turn (e.g. the paper's step-by-step instruction)")
    chat_template: str | None = arg(None, "a Jinja chat template file overriding the tokenizer's own")


@dataclass
class DataArgs:
    prompt_field: str | None = arg(None, "JSONL field holding the prompt (default: detect)")
    response_field: str | None = arg(None, "JSONL field holding the response (default: detect)")
    max_length: int = arg(1024, "longest sequence in tokens (prompt + response)")
    truncate: bool = arg(False, "truncate longer rows instead of dropping them")


@dataclass
class LoadArgs:
    """Shared by every command that loads a model and writes a directory."""

    dtype: str = arg("auto", "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    overwrite: bool = arg(False, "replace a non-empty --out")
    trust_pickle: bool = arg(False, "allow loading .bin/.pt pickled weights")


@dataclass
class AnnotateConfig(TemplateArgs, DataArgs, LoadArgs):
    teacher: str = arg(None, "instruct model directory, .gguf file or hub id", required=True)
    data: str = arg(None, "training JSONL", required=True)
    out: str = arg(None, "output directory for annotations.parquet and meta.json", required=True)
    batch_size: int = arg(8, "rows per forward pass")
    official: bool = arg(False, "--data is an annotation in the paper's format (instruction, response, scores [[p, p], "
                                "...], as its confidence_anno.py writes): its scores become q and the teacher only "
                                "tokenizes (it must give each response as many tokens as it has scores)")
    export_official: str | None = arg(None, "also write the annotation in the paper's format to this JSONL "
                                            "(instruction, response, scores [[q, q], ...]; end-of-turn not scored)")

    def __post_init__(self) -> None:
        if self.max_length < 2 or self.batch_size < 1:
            raise GiftError("--max-length must be at least 2 and --batch-size at least 1")
        if self.export_official and self.official:
            raise GiftError("--export-official with --official would write the file read back; drop one")


@dataclass
class TrainConfig(TemplateArgs, DataArgs, LoadArgs):
    model: str = arg(None, "model to train (the base model for GIFT)", required=True)
    data: str = arg(None, "annotation directory (from gift annotate), or JSONL for sft/dft", required=True)
    out: str = arg(None, "output directory for the adapter", required=True)
    method: str = arg("gift", "token weighting", choices=METHODS)
    gamma: float = arg(1.0, "GIFT weight exponent: w = max(q, floor)^gamma")
    floor: float = arg(1e-4, "lower bound on teacher confidence")
    rho_ratio: float = arg(0.6, "share of tokens kept by Rho-1")
    eaft_alpha: float = arg(1.0, "EAFT exponent: w = (H_top-k / ln k)^alpha of the model's own next-token entropy")
    eaft_topk: int = arg(20, "EAFT: the entropy is over the model's k likeliest next tokens, renormalised")
    asft_alpha: float = arg(0.1, "ASFT weight on KL(p_ref || p_model), the reference being the model with its adapter off")
    filter_keep: float = arg(1.0, "train on this share of rows only: those the annotation's teacher finds likeliest by "
                                  "their mean log-confidence (the teacher-filter baseline with --method sft; 1 = all)")
    rank: int = arg(64, "LoRA rank r")
    alpha: float = arg(128.0, "LoRA alpha")
    lora_dropout: float = arg(0.05, "LoRA dropout")
    target_modules: list[str] = arg(["all-linear"], "modules to adapt (PEFT names; all-linear = every linear projection)")
    lr: float = arg(2e-4, "peak learning rate")
    weight_decay: float = arg(0.0, "AdamW weight decay")
    max_grad_norm: float = arg(1.0, "gradient clipping (0 = off)")
    epochs: float = arg(1.0, "passes over the data")
    max_steps: int | None = arg(None, "optimiser steps (overrides --epochs)")
    batch_size: int = arg(4, "rows per micro-batch per device")
    grad_accum: int = arg(1, "micro-batches per optimiser step")
    warmup_ratio: float = arg(0.1, "share of steps with linear warm-up (then cosine decay)")
    seed: int = arg(0, "seed for data order, LoRA init and dropout")
    save_steps: int = arg(50, "checkpoint every N steps (for --resume)")
    resume: bool = arg(False, "continue from the last checkpoint in OUT.partial")
    report_to: str = arg("none", "experiment tracker, through accelerate (files land in OUT)",
                         choices=("none", "tensorboard", "wandb"))
    eval_data: str | None = arg(None, "held-out data (annotation directory or JSONL, as --data) for an eval loss")
    eval_steps: int = arg(50, "held-out loss every N steps (and at the end) when --eval-data is given")
    group_by_length: bool = arg(True, "cut each optimiser step's padded rows into micro-batches by length (exact: the "
                                      "loss is normalised over the step; rho and packed batches keep the drawn order)")
    padding_free: str = arg("auto", "pack each micro-batch's rows into one row with position_ids (auto: per step, where "
                                    "cheaper than padding by an estimate of the work; on: always); both need a probe "
                                    "to show the model keeps packed rows apart", choices=("auto", "on", "off"))
    gradient_checkpointing: bool = arg(True, "recompute activations in the backward pass (less memory, more time)")

    def __post_init__(self) -> None:
        for name in ("gamma", "floor", "lr", "alpha", "epochs", "eaft_alpha", "asft_alpha"):
            _require_finite(name, getattr(self, name), positive=name not in ("gamma", "eaft_alpha", "asft_alpha"))
        if self.eaft_topk < 2 or self.asft_alpha < 0:
            raise GiftError("--eaft-topk must be at least 2 (the entropy of one token is 0) and --asft-alpha ≥ 0")
        if min(self.rank, self.batch_size, self.grad_accum, self.save_steps, self.eval_steps) < 1:
            raise GiftError("--rank, --batch-size, --grad-accum, --save-steps and --eval-steps must be at least 1")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1 or not 0 < self.rho_ratio <= 1 \
                or not 0 < self.filter_keep <= 1:
            raise GiftError("--lora-dropout and --warmup-ratio must be in [0, 1), --rho-ratio and --filter-keep in (0, 1]")
        if self.max_steps is not None and self.max_steps < 1:
            raise GiftError("--max-steps must be at least 1")


@dataclass
class SelectConfig:
    """gift run's `select:` block: one selection budget for every transfer method, spent on dev only."""

    scales: list[float] = arg([0.0, 0.25, 0.5, 1.0], "merge scales λ tried for every transfer method (0, the untouched "
                                                     "instruct model, is always a candidate)")
    gamma: list[float] = arg([1.0], "GIFT exponents γ tried for gift and gift-baset")
    rho_ratio: list[float] = arg([0.6], "Rho-1's kept shares tried for rho")
    filter_keep: list[float] = arg([0.5], "shares of rows the teacher filter keeps, tried for filter")
    eaft_alpha: list[float] = arg([1.0], "EAFT exponents tried for eaft")
    asft_alpha: list[float] = arg([0.1], "ASFT KL weights tried for asft")
    retention_floor: float | None = arg(None, "least dev retention (mean of the dev-retention benchmarks, in [0, 1]) a "
                                              "candidate may keep (default: the instruct model's − retention_drop)")
    retention_drop: float = arg(2.0, "points below the instruct model's dev retention the default floor allows")
    seeds: list[int] = arg([], "seeds whose dev figures are averaged (default: every seed of the run)")

    def __post_init__(self) -> None:
        grids = {"scales": self.scales, "gamma": self.gamma, "rho_ratio": self.rho_ratio,
                 "filter_keep": self.filter_keep, "eaft_alpha": self.eaft_alpha, "asft_alpha": self.asft_alpha}
        for name, grid in grids.items():
            if not grid or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in grid):
                raise GiftError(f"select.{name}: needs a non-empty list of finite numbers, got {grid!r}")
        if min(self.scales + self.asft_alpha) < 0 or not all(0 < v <= 1 for v in self.rho_ratio + self.filter_keep):
            raise GiftError("select: scales and asft_alpha must be ≥ 0, rho_ratio and filter_keep in (0, 1]")
        if max(self.scales) <= 0:
            raise GiftError("select.scales: needs a merge scale λ above 0 (λ 0, the instruct model, is always a "
                            "candidate; with no other there is nothing to select)")
        if self.retention_floor is not None and not 0 <= self.retention_floor <= 1:
            raise GiftError(f"select.retention_floor: a share of dev retention in [0, 1], got {self.retention_floor} "
                            f"(for 88% write 0.88)")
        if not 0 <= self.retention_drop <= 100:
            raise GiftError(f"select.retention_drop: points below the instruct model's dev retention, in [0, 100], "
                            f"got {self.retention_drop}")
        if 0.0 not in self.scales:
            self.scales = [0.0, *self.scales]


@dataclass
class MergeConfig(LoadArgs):
    instruct: str = arg(None, "instruct model directory, .gguf file or hub id", required=True)
    adapter: str = arg(None, "adapter directory from gift train", required=True)
    out: str = arg(None, "output model directory", required=True)
    scale: float = arg(1.0, "λ: W' = W + λ·(α/r)·B·A")
    dtype: str = arg("auto", "dtype of the saved weights: auto keeps the instruct model's (computed in float32 and "
                             "cast once; the share of the change the cast keeps is reported)")
    combine: str = arg("linear", "linear: W_I + λ·ΔW; ties, dare_ties, dare_linear: the chat vector W_I − W_B (weight 1) "
                                 "and ΔW (weight λ) as task vectors over base, as mergekit combines them",
                       choices=COMBINES)
    density: float = arg(1.0, "--combine: share of each task vector kept (TIES: the largest; DARE: at random)")
    seed: int = arg(0, "--combine dare_*: seed of the random drop (per tensor, from this seed and its name)")
    normalize: bool = arg(False, "--combine: divide by the sum of the kept weights (mergekit's ties default), which "
                                 "rescales the instruct model's own chat vector")
    base: str | None = arg(None, "--combine: the base model the adapter was trained on (default: from gift_train.json)")
    parity_rows: int = arg(4, "prompts on which the merged logits are checked against PeftModel(instruct, adapter) "
                              "(0 = skip: it loads the instruct model once more)")

    def __post_init__(self) -> None:
        _require_finite("scale", self.scale)
        if not 0 < self.density <= 1 or self.parity_rows < 0:
            raise GiftError("--density must be in (0, 1] and --parity-rows ≥ 0")
        if self.combine == "linear" and (self.density < 1 or self.normalize):
            raise GiftError("--density and --normalize apply to --combine ties, dare_ties or dare_linear")
        if self.normalize:
            print("gift: warning: --normalize divides the combined task vectors by the sum of their kept weights, "
                  "which rescales the instruct model's own chat vector (by 1/(1 + λ) where both are kept)",
                  file=sys.stderr)


@dataclass
class CheckConfig(TemplateArgs, DataArgs, LoadArgs):
    base: str = arg(None, "base model directory, .gguf file or hub id", required=True)
    instruct: str = arg(None, "instruct model directory, .gguf file or hub id", required=True)
    data: str | None = arg(None, "training data: an annotation directory (gift annotate) or JSONL, scored by instruct")
    out: str | None = arg(None, "directory for check.json, check.md and distance.png (default: print only)")
    batch_size: int = arg(8, "rows per forward pass when scoring JSONL data")
    adapter: str | None = arg(None, "a plain (Shadow-FT) adapter trained at your budget: its ‖ΔW‖ / ‖W_I − W_B‖ over "
                                    "the tensors it adapts (a real adapter is small against instruction tuning)")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is_list) of a field annotation such as `int | None` or `list[str]`."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _base_type(args[0])
    if typing.get_origin(tp) is list:
        return args[0], True
    return tp, False


CONFIG_HELP = ("YAML file of this command's settings, keyed by flag name without dashes (e.g. `lr: 2.0e-4`, "
               "`target_modules: [q_proj, v_proj]`); relative paths in it are taken relative to the file; flags given "
               "here win")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field; every default is None so explicit flags can be told apart from defaults (the help
    shows the real default)."""
    parser.add_argument("--config", metavar="FILE.yaml", help=CONFIG_HELP)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, is_list = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        shown = "required" if f.metadata.get("required") else f"default: {_default(f)}"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": f"{f.metadata.get('help', '')} ({shown})"}
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
        parser.add_argument(flag, type=tp, nargs="+" if is_list else None, **kw)


def from_args(cls: type, ns: argparse.Namespace) -> Any:
    """Build `cls` from defaults < YAML < explicit flags, and name any missing required field."""
    values: dict[str, Any] = {}
    if getattr(ns, "config", None):
        root = Path(ns.config).resolve().parent
        values.update({k: resolve_paths(k, v, root) for k, v in load_yaml(ns.config).items()})
    values.update({k: v for k, v in vars(ns).items() if v is not None and k != "config"})
    return build(cls, values)


KINDS = ("math", "choice", "exact")  # grading of a JSONL benchmark


def split_spec(spec: str, kind: str) -> tuple[str, str]:
    """'file.jsonl:exact' -> ('file.jsonl', 'exact'); a spec without a known kind suffix keeps `kind`."""
    head, _, tail = spec.rpartition(":")
    return (head, tail) if head and tail in KINDS else (spec, kind)


INPUT_PATHS = {"teacher", "data", "model", "instruct", "adapter", "eval_data", "responses", "chat_template", "bench",
               "compare", "base", "train_data", "file"}


def relative_to(root: Path, path: str) -> str:
    """`path` taken relative to `root` when it names something there (hub ids and absolute paths stay as they are)."""
    head, kind = split_spec(path, "")  # a benchmark spec may end in :kind
    suffix = f":{kind}" if kind else ""
    return str((root / head).resolve()) + suffix if not Path(head).is_absolute() and (root / head).exists() else path


def resolve_paths(key: str, value: Any, root: Path) -> Any:
    """A YAML setting with its paths relative to the YAML's folder: inputs where they exist, `out` always."""
    if key == "out" and isinstance(value, str) and not Path(value).is_absolute():
        return str(root / value)
    if key not in INPUT_PATHS:
        return value
    if isinstance(value, list):
        return [relative_to(root, v) if isinstance(v, str) else v for v in value]
    return relative_to(root, value) if isinstance(value, str) else value


def build(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise GiftError(f"unknown setting {unknown[0]!r} for {cls.__name__}; known: {', '.join(sorted(names))}")
    missing = [n for n, f in names.items() if f.metadata.get("required") and values.get(n) is None]
    if missing:
        raise GiftError(f"missing required setting --{missing[0].replace('_', '-')}")
    return cls(**values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise GiftError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise GiftError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise GiftError(f"{path}: expected a mapping of settings at the top level")
    return {k.replace("-", "_"): v for k, v in data.items()}


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


@dataclass
class EvalConfig(LoadArgs):
    model: str | None = arg(None, "model directory, .gguf file or hub id")
    bench: list[str] = arg([], "benchmarks: gsm8k, math500, minerva_math, olympiadbench, aime24, aime25, amc23, svamp, "
                               "mmlu_stem, ifeval, ifbench, the group paper_math (the paper's five, their unweighted "
                               "mean), or JSONL files (FILE:exact gives one file its own --kind; in a --config YAML an "
                               "entry may be a mapping {name, file, kind, instruction, question_field, answer_field})")
    out: str | None = arg(None, "output directory for results.json, samples.jsonl and scaling.png")
    samples: int = arg(1, "samples per problem at --temperature, besides the greedy answer (k for Avg/maj/pass@k); "
                          "benchmarks that generate and check an answer only (not loglik choice, not IFEval)")
    sample_bench: list[str] | None = arg(None, "the benchmarks that get the --samples (default: all that can; gift "
                                               "run samples its task benchmarks only, as the paper samples math)")
    temperature: float = arg(0.6, "sampling temperature for --samples > 1")
    top_p: float = arg(0.95, "nucleus sampling for --samples > 1")
    max_new_tokens: int = arg(512, "longest completion")
    batch_size: int = arg(16, "sequences per generate call")
    limit: int | None = arg(None, "first N problems of each benchmark")
    seed: int = arg(0, "seed for sampling and confidence intervals")
    backend: str = arg("hf", "generation backend", choices=("hf", "vllm"))
    gpu_memory_utilization: float = arg(0.9, "--backend vllm: share of each GPU's memory the engine may take")
    max_model_len: int | None = arg(None, "--backend vllm: longest prompt + completion the engine holds (default: the "
                                          "model's context; a smaller one leaves more memory for the KV cache)")
    tensor_parallel_size: int = arg(1, "--backend vllm: GPUs one engine splits the model over (for data parallel "
                                       "evaluation run `gift run --shard i/n` once per GPU)")
    question_field: str | None = arg(None, "question field of a JSONL benchmark")
    answer_field: str | None = arg(None, "answer field of a JSONL benchmark")
    kind: str = arg("math", "grading of JSONL benchmarks without a :kind suffix", choices=KINDS)
    math_instruction: str | None = arg(None, "instruction after math questions (default: the paper's step-by-step/boxed)")
    choice_instruction: str | None = arg(None, "instruction after multiple-choice questions")
    choice_mode: str = arg("generate", "multiple choice by generated letter or by option log-likelihood",
                           choices=("generate", "loglik"))
    system_prompt: str | None = arg(None, "system message for every prompt")
    compare: list[str] = arg([], "result directories to tabulate and plot together (no model is run)")

    def __post_init__(self) -> None:
        if self.compare:
            return
        if not self.model or not self.bench or not self.out:
            raise GiftError("gift eval needs --model, --bench and --out (or --compare DIR DIR ...)")
        if self.samples < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise GiftError("--samples, --batch-size and --max-new-tokens must be at least 1")
        _require_finite("temperature", self.temperature)
        if self.samples > 1 and self.temperature <= 0:
            raise GiftError("--samples > 1 needs --temperature > 0 (greedy samples would all be the same)")
        if self.backend == "vllm" and self.choice_mode == "loglik":
            raise GiftError("--choice-mode loglik scores options with the HF model; use --backend hf, or --choice-mode "
                            "generate with vLLM")
        if not 0 < self.gpu_memory_utilization <= 1 or self.tensor_parallel_size < 1:
            raise GiftError("--gpu-memory-utilization must be in (0, 1] and --tensor-parallel-size at least 1")

    def sampled(self, bench: str) -> bool:
        """Whether --sample-bench lets this benchmark have the --samples."""
        return self.sample_bench is None or bench in self.sample_bench


@dataclass
class ScoreConfig:
    bench: str = arg(None, "benchmark the responses answer (a name or JSONL file, as for gift eval)", required=True)
    responses: str = arg(None, "JSONL with `prompt` (or `id`) and `response` and/or `responses`, or a gift eval "
                               "samples.jsonl", required=True)
    out: str = arg(None, "output directory for results.json and samples.jsonl", required=True)
    model: str | None = arg(None, "the model that wrote the responses (recorded only)")
    question_field: str | None = arg(None, "question field of a JSONL benchmark")
    answer_field: str | None = arg(None, "answer field of a JSONL benchmark")
    kind: str = arg("math", "grading of a JSONL benchmark without a :kind suffix", choices=KINDS)
    math_instruction: str | None = arg(None, "instruction that followed math questions (for matching by prompt)")
    choice_instruction: str | None = arg(None, "instruction that followed multiple-choice questions")
    seed: int = arg(0, "seed for the confidence intervals")
    overwrite: bool = arg(False, "replace a non-empty --out")
