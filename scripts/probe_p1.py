"""P1 of a bundled pair on fresh problems of a given kind, before any task is built from them (issue 44):

    python scripts/probe_p1.py src/gift/assets/tiny2 [--max-n 9] [--one-step 0] [--rows 200] [--seed 7]
                               [--recall [field|one_flock]]

Draws problems as gift.tiny.regime.problem does (`--max-n` caps every number, `--one-step` is the share of one-step
problems; `--recall`: problems on recalled flocks, world.RECALL_PROBLEMS, field by default), teacher-forces each correct
solution in the instruct model's own style and prints P1 (gift.tiny.regime.failure_confidences): how many problems
greedy decoding would leave, the median of the instruct model's q of the correct token where it first does, and the
share of those below 0.1. Measured on the instruct model alone, it picks the problems a task may be built on without
any training.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from gift.tiny import world
from gift.tiny.regime import failure_confidences, problem, world_people


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair")
    ap.add_argument("--max-n", type=int, default=None)
    ap.add_argument("--one-step", type=float, default=0.0)
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--recall", nargs="?", const="field", choices=sorted(world.RECALL_PROBLEMS),
                    help="problems on recalled flocks (a world with flocks)")
    args = ap.parse_args()
    pair = Path(args.pair)
    people = world_people(pair)
    rng = random.Random(args.seed)
    if args.recall:
        make = world.RECALL_PROBLEMS[args.recall]
        rows = [dict(zip(("question", "recalled"), make(rng, people))) for _ in range(args.rows)]
        kind = {"problems": args.recall}
    else:
        rows = [{"question": problem(rng, people, args.one_step, args.max_n)[0]} for _ in range(args.rows)]
        kind = {"max_n": args.max_n or world.MAX_N, "one_step": args.one_step}
    print(json.dumps({**kind, **failure_confidences(pair / "instruct", rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
