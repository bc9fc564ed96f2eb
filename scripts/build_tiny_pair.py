"""Build the bundled tiny base/instruct pair and its task data: the only way src/gift/assets/tiny is made.

    python scripts/build_tiny_pair.py [--out src/gift/assets/tiny] [--seed 0] [--quick]

base: a Llama pretrained from scratch on the world's plain-text corpus (never sees the chat template).
instruct: base after full-parameter instruction tuning on chat data (general skills, facts, arithmetic).
Also writes data/{math,knowledge,retention}_{train,dev,test}.jsonl and manifest.json (seed, config,
build time, sha256 of every file).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from gift.tiny import TinyConfig, build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parents[1] / "src" / "gift" / "assets" / "tiny"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a miniature build for trying the script (minutes)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = TinyConfig(seed=args.seed)
    if args.quick:
        cfg = dataclasses.replace(cfg, pretrain_steps=150, instruct_steps=80)
    manifest = build(cfg, Path(args.out))
    print(json.dumps({k: manifest[k] for k in ("parameters", "vocab_size", "build_seconds", "final_loss")}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
