"""What each model of a bundled pair knows of its world's facts, before any task is built on them (issue 44):

    python scripts/probe_facts.py runs/tiny7 [--layout chat]

For every person and every fact (town, job, colour, and the flock in worlds that have one), the probability each
model gives the true value, teacher-forced after the question and the answer's opening ("Kami is a" → " baker"), in
the chat template (`--layout chat`, the instruct model's) or the plain pretraining layout (`--layout plain`, the
base's). Prints per fact the mean probability of the truth and the share of people it is above 0.5, per model: a
task can make the teacher sure of a token the base pays for only on facts where the two differ.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from gift.data import Encoded, TemplateOptions, encode, end_of_turn_ids, pad_batch, to_example
from gift.model import load_model, load_tokenizer
from gift.tiny import world
from gift.tiny.regime import world_people


def facts(people: list[world.Person]) -> list[tuple[str, dict[str, str], str]]:
    """(fact, question and answer, the true value) for every person and fact."""
    rows = [(attr, world.qa(q.format(p.name), a.format(p.name, getattr(p, attr))), getattr(p, attr))
            for p in people for attr, (q, a, _) in world.ATTRIBUTES.items()]
    return rows + [("flock", world.sheep_question(random.Random(0), [p]), str(p.sheep))
                   for p in people if p.sheep is not None]


def truth_probabilities(model_dir: Path, rows: list[tuple[str, dict[str, str], str]], layout: str) -> list[float]:
    """p(the value's first token | everything before it) for each row, in `layout`."""
    tok, model = load_tokenizer(str(model_dir)), load_model(str(model_dir)).eval()
    opts = TemplateOptions()
    eot = end_of_turn_ids(tok, opts)
    if layout == "chat":
        ids = [list(encode(tok, to_example(ex, "facts", i), opts, eot).input_ids) for i, (_, ex, _) in enumerate(rows)]
    else:
        ids = [tok(world.plain(ex), add_special_tokens=False)["input_ids"] for _, ex, _ in rows]
    at = []
    for seq, (_, _, value) in zip(ids, rows):
        first = tok(" " + value, add_special_tokens=False)["input_ids"][0]
        at.append(max(i for i, t in enumerate(seq) if t == first))  # the answer states it last
    batch = pad_batch([Encoded(s, s) for s in ids], tok.pad_token_id)
    with torch.inference_mode():
        probs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().softmax(-1)
    return [probs[j, i - 1, seq[i]].item() for j, (seq, i) in enumerate(zip(ids, at))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair")
    ap.add_argument("--layout", choices=["chat", "plain"], default="chat")
    args = ap.parse_args()
    pair = Path(args.pair)
    people = world_people(pair)
    rows = facts(people)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in ("base", "instruct"):
        ps = truth_probabilities(pair / name, rows, args.layout)
        for fact in dict.fromkeys(f for f, _, _ in rows):
            mine = [p for p, (f, _, _) in zip(ps, rows) if f == fact]
            out.setdefault(fact, {})[name] = {"mean": round(sum(mine) / len(mine), 4),
                                              "above_half": round(sum(p > 0.5 for p in mine) / len(mine), 4)}
    print(json.dumps({"layout": args.layout, "facts": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
