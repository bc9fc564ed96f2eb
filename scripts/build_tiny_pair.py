"""Build the bundled tiny base/instruct pair and its task data: the only way src/gift/assets/tiny is made.

    python scripts/build_tiny_pair.py [--out src/gift/assets/tiny] [--seed 0] [--quick] [--set KEY=VALUE ...]
                                      [--cache DIR]

base: a Llama pretrained from scratch on the world's corpus (plain text and a thin share of chat logs about facts).
instruct: base after a short, gentle full-parameter instruction tuning on chats of the same skills.
Also writes data/{math,knowledge,retention}_{train,dev,test}.jsonl, the gates a real pair meets (weight
delta, post-training budget, instruction following, knowledge, task headroom, transfer), PROVENANCE.md
and manifest.json (seed, config, build time, gates, sha256 of every file).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import yaml

from gift.tiny import world
from gift.tiny.build import TinyConfig, build


def override(cfg: TinyConfig, setting: str) -> tuple[str, object]:
    """KEY=VALUE → (key, value as the field's type): YAML reads 2e-4 as a string, which the optimiser would refuse;
    a mapping updates the field's default mapping."""
    key, _, text = setting.partition("=")
    if key not in {f.name for f in dataclasses.fields(cfg)}:
        sys.exit(f"--set {setting}: TinyConfig has no field {key!r}")
    value, default = yaml.safe_load(text), getattr(cfg, key)
    if isinstance(default, float) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, dict) or isinstance(value, dict):
        if not isinstance(value, dict) or set(value) - set(world.KINDS):
            sys.exit(f"--set {setting}: give a mapping with keys among {', '.join(world.KINDS)}")
    if isinstance(default, dict):  # a partial mapping updates the default: --set 'instruct_mix={one_step: 0.2}'
        value = {**default, **value}
    return key, value


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parents[1] / "src" / "gift" / "assets" / "tiny"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a miniature build for trying the script (minutes)")
    # extend: `--set a=1 --set b=2` (as PROVENANCE.md writes it) keeps both; argparse's default kept only the last
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override a TinyConfig field (repeatable)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "gift" / "tiny-pretrain"),
                    help="where pretrained bases are kept and reused by builds that differ only after pretraining "
                         "(instruction tuning, splits, gates); '' turns it off")
    return ap


def overrides(cfg: TinyConfig, settings: list[str]) -> dict[str, object]:
    """Every --set as a field value; a field set twice is refused (which one was meant?)."""
    out: dict[str, object] = {}
    for setting in settings:
        key, value = override(cfg, setting)
        if key in out:
            sys.exit(f"--set {setting}: {key} is set twice")
        out[key] = value
    return out


def main() -> int:
    args = parser().parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = TinyConfig(seed=args.seed)
    if args.quick:
        cfg = dataclasses.replace(cfg, pretrain_steps=150, instruct_steps=80)
    cfg = dataclasses.replace(cfg, **overrides(cfg, args.set))
    manifest = build(cfg, Path(args.out), cache=Path(args.cache) if args.cache else None)
    print(json.dumps({k: manifest.get(k) for k in ("parameters", "build_seconds", "final_loss", "gates")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
