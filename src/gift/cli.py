"""The `gift` command: check-pair, annotate, train, merge, eval, score, run, demo."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .config import (
    DEMOS,
    AnnotateConfig,
    CheckConfig,
    EvalConfig,
    MergeConfig,
    ScoreConfig,
    TrainConfig,
    add_arguments,
    from_args,
)
from .errors import GiftError


def _annotate(cfg: Any) -> None:
    from .annotate import annotate
    annotate(cfg)


def _train(cfg: Any) -> None:
    from .train import train
    train(cfg)


def _merge(cfg: Any) -> None:
    from .merge import merge
    merge(cfg)


def _eval(cfg: Any) -> None:
    from .evaluate import evaluate
    evaluate(cfg)


def _score(cfg: Any) -> None:
    from .evaluate import score
    score(cfg)


def _check(cfg: Any) -> None:
    from .diagnose import check_pair
    check_pair(cfg)


COMMANDS: dict[str, tuple[type, Callable[[Any], None], str]] = {
    "check-pair": (CheckConfig, _check, "before training: can this base/instruct pair (and data) transfer?"),
    "annotate": (AnnotateConfig, _annotate, "score the training data with the instruct model (teacher)"),
    "train": (TrainConfig, _train, "fit a LoRA adapter with the confidence-weighted loss"),
    "merge": (MergeConfig, _merge, "merge an adapter into the instruct model"),
    "eval": (EvalConfig, _eval, "evaluate a model: accuracy, test-time scaling, instruction following"),
    "score": (ScoreConfig, _score, "grade responses generated elsewhere (or re-grade a gift eval samples.jsonl)"),
}


GUIDES = {name: f"Guide: docs/{page}.md in gift's repository (every flag explained, with the figures behind defaults)."
          for name, page in (("check-pair", "check-pair"), ("annotate", "annotate"), ("train", "train"),
                             ("merge", "merge"), ("eval", "evaluate"), ("score", "evaluate"), ("run", "experiments"),
                             ("demo", "experiments"))}


def _add_run_arguments(p: argparse.ArgumentParser, with_config: bool) -> None:
    if with_config:
        p.add_argument("config", help="experiment YAML (see configs/)")
    p.add_argument("--out", help="experiment directory (finished stages in it are reused)")
    p.add_argument("--methods", nargs="+", help="methods to run (default: the config's)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the config's)")
    p.add_argument("--train-data", help="training rows (default: the config's; relative to where gift runs): "
                   "the same comparison on another data set or variant, without a copy of the config")
    p.add_argument("--merge-all", action="store_true", default=None,
                   help="write every evaluated candidate as a merged model instead of serving adapters at run time")
    p.add_argument("--shard", metavar="I/N", help="do part I of N (0-based) of the selection's trainings and dev "
                   "evaluations in this OUT, beside N-1 other processes (one per GPU: CUDA_VISIBLE_DEVICES=I), then exit; "
                   "a last run without --shard selects, tests and ships")
    p.add_argument("--plan", action="store_true", help="print the stages, tokens, bytes written and time the run "
                   "would take, and exit (no compute)")
    p.add_argument("--preset", choices=["h100", "cpu"], default="h100", help="--plan: throughputs of one H100 or of a "
                   "2-core CPU (default h100)")
    p.add_argument("--throughput", nargs="+", default=[], metavar="KEY=VALUE",
                   help="--plan: override a preset's figure (train_flops, forward_flops, vllm_flops, hf_flops, "
                        "load_bytes_s, write_bytes_s, engine_start_s, param_bytes)")


def _run(args: argparse.Namespace, config: str) -> None:
    from .experiment import Experiment, load_run_config, run
    from .plan import PRESETS
    from .report import verdict

    overrides = {k: getattr(args, k) for k in ("out", "methods", "seeds", "merge_all") if getattr(args, k, None)}
    if getattr(args, "train_data", None):
        overrides["train_data"] = str(Path(args.train_data).resolve())
    if args.plan:
        rates = {}
        for item in args.throughput:
            key, _, value = item.partition("=")
            if key not in PRESETS[args.preset]:
                raise GiftError(f"--throughput {item}: unknown figure; choose from {', '.join(PRESETS[args.preset])}")
            try:
                rates[key] = float(value)
            except ValueError:
                raise GiftError(f"--throughput {item}: {value!r} is not a number") from None
        print(Experiment(load_run_config(config, overrides)).plan(args.preset, rates)[1])
        return
    if getattr(args, "shard", None):
        index, _, count = args.shard.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise GiftError(f"--shard {args.shard}: expected I/N with 0 <= I < N, e.g. --shard 0/4")
        did = Experiment(load_run_config(config, overrides)).shard(int(index), int(count))
        print(f"shard {args.shard}: {did} stage(s) done here; when every shard has finished, run the same command "
              f"without --shard to select, test and ship")
        return
    summary = run(config, overrides)
    out = Path(summary["out"])
    print(verdict(summary))
    print(f"report: {out / 'report.md'} (all metrics: {out / 'results.json'})")
    print("plots: " + ", ".join(str(p) for p in sorted(out.glob("*.png"))))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gift", description="Guided Fine-Tuning and Transfer (GIFT).")
    p.add_argument("--version", action="version", version=f"gift {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (cls, _, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text, epilog=GUIDES[name]), cls)
    run_help = "run an experiment: methods x seeds, evaluation, report"
    _add_run_arguments(sub.add_parser("run", help=run_help, epilog=GUIDES["run"],
                                      description=run_help + ". Every finished stage in --out "
                                      "is reused: more seeds or methods grow an experiment; changed shared settings "
                                      "are refused."), True)
    demo_help = "gift run on the bundled tiny pair (one seed, minutes on a laptop CPU)"
    demo = sub.add_parser("demo", help=demo_help, epilog=GUIDES["demo"],
                          description=demo_help + ". --task paper (the default): "
                          "Instruct-SFT, Shadow-FT, the teacher filter and GIFT trained on the paper-regime task at the "
                          "paper's budget, each method's knob and merge scale λ chosen on dev under a retention floor, "
                          "test read once at each chosen point (greedy and the paper's Avg@16) beside GIFT as "
                          "published; --task math: the first task. Prints each method's paired difference against "
                          "instruct and the model to ship (default --out runs/demo-<task>).")
    demo.add_argument("--task", choices=list(DEMOS), default="paper",
                      help="paper: the paper's regime (data worse for the instruct model than its own behaviour); "
                           "math: a skill the instruct model lacks, taught perfectly by the data")
    _add_run_arguments(demo, False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    debug = args.__dict__.pop("debug")
    command = args.__dict__.pop("command")
    try:
        if command == "run":
            _run(args, args.config)
        elif command == "demo":
            task = args.__dict__.pop("task")
            args.out = args.out or f"runs/demo-{task}"
            _run(args, str(DEMOS[task]))
        else:
            cls, run, _ = COMMANDS[command]
            run(from_args(cls, args))
    except GiftError as e:
        if debug:
            raise
        for line in str(e).splitlines() or [""]:  # one line per error (check-pair can find several)
            print(f"gift: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gift: interrupted; nothing was published (a training run can continue with --resume)", file=sys.stderr)
        return 130
    finally:
        leave_process_group()
    return 0


def leave_process_group() -> None:
    """Under torchrun, destroy the process group before exit. If the interpreter tears it down instead, a gloo worker
    thread can abort the finished process with SIGABRT ("terminate called without an active exception";
    pytorch/pytorch#190489)."""
    dist = sys.modules.get("torch.distributed")  # only a command that trained has imported it
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
