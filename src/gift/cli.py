"""The `gift` command: annotate, train, merge, eval, run, demo."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from . import __version__
from .config import AnnotateConfig, EvalConfig, MergeConfig, TrainConfig, add_arguments, from_args
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


COMMANDS: dict[str, tuple[type, Callable[[Any], None], str]] = {
    "annotate": (AnnotateConfig, _annotate, "score the training data with the instruct model (teacher)"),
    "train": (TrainConfig, _train, "fit a LoRA adapter with the confidence-weighted loss"),
    "merge": (MergeConfig, _merge, "merge an adapter into the instruct model"),
    "eval": (EvalConfig, _eval, "evaluate a model: accuracy, test-time scaling, instruction following"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gift", description="Guided Fine-Tuning and Transfer (GIFT).")
    p.add_argument("--version", action="version", version=f"gift {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (cls, _, help_text) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text), cls)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    debug = args.__dict__.pop("debug")
    cls, run, _ = COMMANDS[args.__dict__.pop("command")]
    try:
        run(from_args(cls, args))
    except GiftError as e:
        if debug:
            raise
        print(f"gift: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gift: interrupted; nothing was published (a training run can continue with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
