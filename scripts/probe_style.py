"""How each model of a bundled pair writes its work on fresh problems, before any task is built from them:

    python scripts/probe_style.py runs/tiny15 --recall one_flock [--rows 200] [--seed 7]

Greedy answers of the base and the instruct model, both through the chat template (the layout a task's training
rows and its evaluation use), on problems drawn as scripts/probe_p1.py draws them; for each model the share of
answers written as one equation (the compound style), one equation per step, or none, the share answered right and
the share whose recall names the question's people in order (a two-flock problem's second name is one to copy).
It measures, on the two models only, whether a style is the base's own and not the instruct model's (issue 44).
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from gift.data import TemplateOptions, render
from gift.generate import generate_hf
from gift.model import load_model, load_tokenizer
from gift.tiny import world
from gift.tiny.regime import steps_of, world_people, written


def names(text: str, n: int | None = None) -> list[str]:
    """The names opening the first `n` sentences of `text` (all of them by default): who a recall names, in order."""
    return [sentence.split(" ", 1)[0] for sentence in text.split(". ")[:n]]


def styles(pair: Path, rows: list[tuple[str, str]], batch_size: int = 64) -> dict[str, dict[str, Any]]:
    """For the base and the instruct model of `pair`: shares of greedy answers to (question, recalled flock) `rows`
    by how they write their work, the share right, and the first answer, each through its own chat template."""
    truth = [steps_of(q, recalled)[-1][1] for q, recalled in rows]
    report: dict[str, dict[str, Any]] = {}
    for name in ("base", "instruct"):
        tok, model = load_tokenizer(str(pair / name)), load_model(str(pair / name)).eval()
        prompts = [render(tok, [{"role": "user", "content": q}], TemplateOptions(), add_generation_prompt=True)
                   for q, _ in rows]
        answers = [a[0] for a in generate_hf(model, tok, prompts, 1, 0.0, 1.0, 64, batch_size, 0, desc=name)[0]]
        seen = [written(a) for a in answers]
        works = Counter(s["work"] for s in seen)
        named = sum(names(a, len(names(r))) == names(r) for a, (_, r) in zip(answers, rows))
        report[name] = {**{w: works[w] / len(rows) for w in ("one equation", "one per step", "none")},
                        "right": sum(s["answer"] == t for s, t in zip(seen, truth)) / len(rows),
                        "names copied": named / len(rows), "example": answers[0]}
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair")
    ap.add_argument("--recall", default="one_flock", choices=sorted(world.RECALL_PROBLEMS))
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    pair = Path(args.pair)
    people = world_people(pair)
    rng = random.Random(args.seed)
    rows = [world.RECALL_PROBLEMS[args.recall](rng, people)[:2] for _ in range(args.rows)]
    print(json.dumps({"problems": args.recall, "rows": args.rows, **styles(pair, rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
