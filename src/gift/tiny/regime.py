"""A second task on the bundled pair, in the GIFT paper's regime: data that is worse for the instruct model than
its own behaviour, as NuminaMath-CoT is for the paper's instruct models.

What makes NuminaMath-CoT that, and the lever each gives here (`Variant`; every variant built is in VARIANTS and
its gate figures in the shipped manifest):
- its solutions are another model's, close to an instruct model's style but not its own: "restate" restates each
  step in words before the instruct model's equation; "plain" writes the instruct model's equations and closes
  with "So the answer is" where the instruct model writes "The answer is";
- not all are right: a share slips by 1-3 in one step (the last, or any, later steps computing on from it), and a
  share of the two-step solutions misreads the problem as the instruct model itself most often does (adding the
  number given away instead of the one received);
- the problem types were seen in instruction tuning: one- and two-step word problems, both in the instruct
  model's mix, in shares of their own on train (`train_one_step`) and on test.
The test split mixes the two types (the instruct model solves nearly every one-step and a fifth of the two-step
problems), graded on the true answer. The gates come from the paper's baseline figures, never from GIFT's result
(`GATES`); GIFT is trained by the gate run only for its share of the loss.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from ..data import read_jsonl
from ..preconditions import BOUNDS, from_check
from . import world

SPLITS = {"train": 2000, "dev": 200, "test": 300}
EPS = 1e-9  # accuracies are counts over 300 problems: a figure on a bound meets it, whatever the float rounding
# gate -> (holds, target); figures as measured by `measure` (fractions; shares of the training loss)
MARGIN = 0.01  # the variant sweep's gates must hold by a point on the mean of its seeds (a bound met by less is noise)
# gate -> (holds(figures, margin), target); figures as measured by a gate run (fractions; shares of the training loss)
GATES = {
    "instruct competent": (lambda g, m: 0.30 + m - EPS <= g["instruct"] <= 0.70 - m + EPS,
                           "instruct 30-70% greedy (paper 41.3)"),
    "the data harms it": (lambda g, m: g["instruct-sft"] <= g["instruct"] - 0.05 - m + EPS,
                          "Instruct-SFT ≤ instruct − 5 points (paper 41.3 → 21.2)"),
    "plain transfer about neutral": (lambda g, m: g["instruct"] - 0.10 + m - EPS <= g["shadow-ft"]
                                     <= g["instruct"] + 0.05 - m + EPS,
                                     "Shadow-FT within instruct − 10 … + 5 points (paper 38.0 vs 41.3)"),
    "the teacher sees the paper's data": (lambda g, m: 0.65 + m <= g["shadow-ft_low_q_loss"] <= 0.90 - m
                                          and 0.15 + m <= g["gift_low_q_loss"] <= 0.45 - m,
                                          "low-q loss share: Shadow-FT 65-90%, GIFT (γ 1) 15-45% (paper 79.7%, 29.6%)"),
}


# issue 44's preconditions as docs/experiments.md fixed them before any GIFT result on a new world; figures as
# `preconditions` measures them (P2-P4 from check-pair on the annotation, P5 the mean over Shadow-FT seeds)
PRECONDITIONS = {
    "P1": (lambda f: f["P1"]["failures"] == 0 or (f["P1"]["median"] >= 0.1 and f["P1"]["below"] < 0.5),
           "where instruct fails on dev, q of the correct token: median ≥ 0.1, under half below 0.1"),
    **BOUNDS,
    "P6": (lambda f: f["P6"] <= 0.10, "wrong training rows ≤ 10%"),
}


@dataclass(frozen=True)
class Variant:
    """How the training solutions are written: `wrong` share slipping by 1-3 in one step (`slip` "last", or
    "any" step, later steps carrying the wrong value forward), `one_step` share of one-step problems on test and
    dev (`train_one_step` on train, default the same), `style` "restate" (each step restated in words before the
    instruct model's equation), "plain" (the instruct model's equations, the answer sentence its own but for a
    leading "So") or "tally" (the instruct model's equations and answer sentence, each equation followed by the
    count it leaves, ", so Kami has 8 apples.": words the instruct model never writes, meant to sit where nothing
    is decided; measured, the stop after the last count still follows them: docs/experiments.md); "tally-last",
    "restate-first" and "restate-first-tally-last" mark only those steps, "retell" states the count in the world's
    prose before and after every step, "compound" writes every step in one equation ("4 + 3 - 2 = 5."), "instruct"
    is the instruct model's own solution. `misread`:
    share of two-step training solutions that add the number given away instead of the one received (the
    instruct model's own commonest error) and compute on correctly from it. `max_n`: every number in the problems
    at most this (default the world's range, world.MAX_N). `own`: share of training solutions written as the
    instruct model would ("instruct" style), the rest in `style`, as part of NuminaMath-CoT reads like an instruct
    model's own. `fact`: every solution opens by stating the person's job ("Kami is a baker."), meant as
    a fact the instruct model knows better than the base; measured (scripts/probe_facts.py) both models know every
    job, town and colour (p of the truth ≥ 0.999 on tiny6): the base's low multiple-choice score is the letter
    format. `recall`: problems on people's flocks, which the problem does not state (world.RECALL_PROBLEMS: "field",
    two flocks; "one_flock"): every solution opens by recalling them as the instruct model does ("Kami has 7 sheep."),
    a fact the teacher is sure of and the base half-knows (worlds built with `sheep_share`, `sheep_truth` < 1);
    the steps after it in `style`, the count the tally keeps being the field's. `opener`: words every solution
    opens with (a share `opens` of them), a habit of the data's writer that neither model has where a response
    starts."""

    wrong: float
    one_step: float = 0.5
    style: str = "restate"
    slip: str = "last"
    train_one_step: float | None = None
    misread: float = 0.0
    max_n: int | None = None
    own: float = 0.0
    fact: bool = False
    recall: str = ""
    own_style: str = "instruct"
    opener: str = ""
    opens: float = 1.0


VARIANTS = {
    "near-style": Variant(wrong=0.0),
    "near-style-wrong-30": Variant(wrong=0.3),
    "near-style-wrong-50": Variant(wrong=0.5),
    "plain": Variant(wrong=0.0, style="plain"),
    "plain-wrong-50": Variant(wrong=0.5, style="plain", slip="any"),
    "plain-wrong-50-one-step-80": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.8),
    "plain-wrong-50-one-step-only": Variant(wrong=0.5, style="plain", slip="any", train_one_step=1.0),
    "plain-wrong-20-one-step-only": Variant(wrong=0.2, style="plain", slip="any", train_one_step=1.0),
    "plain-wrong-50-one-step-95": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.95),
    "plain-wrong-50-one-step-98": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.98),
    "plain-wrong-50-one-step-99": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.99),
    "plain-one-step-only": Variant(wrong=0.0, style="plain", train_one_step=1.0),
    "plain-misread-70": Variant(wrong=0.0, style="plain", misread=0.7),
    "plain-wrong-50-one-step-95-misread-70": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.95,
                                                     misread=0.7),
    "plain-wrong-50-one-step-90-misread-70": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.9,
                                                     misread=0.7),
    "plain-wrong-40-one-step-90-misread-70": Variant(wrong=0.4, style="plain", slip="any", train_one_step=0.9,
                                                     misread=0.7),
    "plain-wrong-50-one-step-90-misread-60": Variant(wrong=0.5, style="plain", slip="any", train_one_step=0.9,
                                                     misread=0.6),
    "plain-wrong-70": Variant(wrong=0.7, style="plain", slip="any"),
    "plain-wrong-90": Variant(wrong=0.9, style="plain", slip="any"),
    "plain-wrong-70-one-step-80": Variant(wrong=0.7, style="plain", slip="any", train_one_step=0.8),
    "plain-wrong-80": Variant(wrong=0.8, style="plain", slip="any"),
    "plain-wrong-85": Variant(wrong=0.85, style="plain", slip="any"),
    # issue 44's candidates for the second pair (tiny2): mostly correct solutions in a style of their own, on the
    # two-step problems whose failures the teacher is unsure of (numbers to 9: P1 median 0.130 there against 0.047
    # over the world's range, scripts/probe_p1.py on the instruct model alone)
    "small-tally": Variant(wrong=0.0, style="tally", slip="any", one_step=0.0, max_n=9),
    "small-tally-wrong-10": Variant(wrong=0.1, style="tally", slip="any", one_step=0.0, max_n=9),
    "small-near-style-wrong-10": Variant(wrong=0.1, slip="any", one_step=0.0, max_n=9),
    "small-near-style": Variant(wrong=0.0, one_step=0.0, max_n=9),
    "small-plain": Variant(wrong=0.0, style="plain", one_step=0.0, max_n=9),
    # screened (P2-P4, no training) after those five's figures, on tiny2 and on the next pair: the style words on
    # part of the steps only, or in the world's own prose ("retell"); "small-instruct" (the instruct model's own
    # solutions) is the reference a style is measured against, not a candidate
    "small-tally-last": Variant(wrong=0.0, style="tally-last", one_step=0.0, max_n=9),
    "small-restate-first": Variant(wrong=0.0, style="restate-first", one_step=0.0, max_n=9),
    "small-restate-first-tally-last": Variant(wrong=0.0, style="restate-first-tally-last", one_step=0.0, max_n=9),
    "small-retell": Variant(wrong=0.0, style="retell", one_step=0.0, max_n=9),
    "small-instruct": Variant(wrong=0.0, style="instruct", one_step=0.0, max_n=9),
    # screened on tiny4/tiny5 after every style above put ≥ 97% of the base's loss on tokens the teacher finds
    # unlikely (P4 uniform 65-90% asks for a share the teacher is sure of): part of the rows in the teacher's own words
    "small-tally-own-25": Variant(wrong=0.0, style="tally", one_step=0.0, max_n=9, own=0.25),
    "small-tally-own-50": Variant(wrong=0.0, style="tally", one_step=0.0, max_n=9, own=0.5),
    "small-tally-own-75": Variant(wrong=0.0, style="tally", one_step=0.0, max_n=9, own=0.75),
    "small-retell-own-50": Variant(wrong=0.0, style="retell", one_step=0.0, max_n=9, own=0.5),
    # then (tiny6): the instruct model's own solutions after a fact (which both models turned out to know)
    "small-fact": Variant(wrong=0.0, style="instruct", one_step=0.0, max_n=9, fact=True),
    "small-fact-tally": Variant(wrong=0.0, style="tally", one_step=0.0, max_n=9, fact=True),
    # then (a world with a numeric fact, tiny7): problems on two recalled flocks, the steps in each style
    "field-instruct": Variant(wrong=0.0, style="instruct", one_step=0.0, recall="field"),
    "field-plain": Variant(wrong=0.0, style="plain", one_step=0.0, recall="field"),
    "field-tally": Variant(wrong=0.0, style="tally", one_step=0.0, recall="field"),
    "field-tally-last": Variant(wrong=0.0, style="tally-last", one_step=0.0, recall="field"),
    # then (tiny9-tiny11): problems on one recalled flock, whose name opens the question (tiny8's models could not
    # copy the field problem's second name); flock-tally on tiny11 passes the screen (docs/experiments.md)
    "flock-instruct": Variant(wrong=0.0, style="instruct", one_step=0.0, recall="one_flock"),
    "flock-plain": Variant(wrong=0.0, style="plain", one_step=0.0, recall="one_flock"),
    "flock-tally": Variant(wrong=0.0, style="tally", one_step=0.0, recall="one_flock"),
    "flock-tally-last": Variant(wrong=0.0, style="tally-last", one_step=0.0, recall="one_flock"),
    # then (tiny10-i1, after its screen: the instruct model's own solutions 48% / 38%, tally's 99% / 48%): mostly the
    # teacher's own solutions, a few in tally's style
    "flock-tally-own-80": Variant(wrong=0.0, style="tally", one_step=0.0, recall="one_flock", own=0.8),
    "flock-tally-own-90": Variant(wrong=0.0, style="tally", one_step=0.0, recall="one_flock", own=0.9),
    # then (tiny11, after flock-tally's gate run: right data in a style the model executes as well as its own cannot
    # harm it): both steps in one equation, a style harder to execute (docs/experiments.md)
    "flock-compound": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock"),
    # then (tiny15, after flock-compound's P4 66.0% / 49.0%: the teacher's q on its low-confidence tokens too high
    # against that on its sure ones): words the teacher never writes, in every row or a quarter, or a quarter in its
    # own words
    "flock-compound-tally": Variant(wrong=0.0, style="compound-tally", one_step=0.0, recall="one_flock"),
    "flock-compound-own-25": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.25),
    "flock-compound-tally-25": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.25,
                                       own_style="tally"),
    # then (after those three's screen: a quarter in the teacher's words takes the ratio to 0.36 and the uniform
    # share to 30%): fewer rows in its words, and the same with an opener in every row, words the teacher gives
    # q near 0 where a response starts, in every row so that no context is continued two ways by them
    "flock-compound-own-5": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.05),
    "flock-compound-own-10": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.1),
    "flock-compound-own-10-well": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.1,
                                          opener="Well,"),
    "flock-compound-own-10-first": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.1,
                                           opener="First,"),
    # then (the opener costs the base 31 nats where a row costs it 2.6: uniform 97%): the opener on a tenth of rows
    "flock-compound-own-10-first-10": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock", own=0.1,
                                              opener="First,", opens=0.1),
    # then (tiny15-i3, a teacher sure of the flocks: the uniform share 46%): the opener alone on a share of the rows
    **{f"flock-compound-first-{k}": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock",
                                            opener="First,", opens=k / 100) for k in (10, 20, 30)},
    # then (tiny15-i3 solves 89.5% of flock problems): the sheep that come drawn to 20, the arithmetic the difficulty
    "wide-compound": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock_wide"),
    "wide-compound-first-10": Variant(wrong=0.0, style="compound", one_step=0.0, recall="one_flock_wide",
                                      opener="First,", opens=0.1),
    # then (tiny17: a teacher sure of a flock also solves one-flock problems): two flocks to recall in each problem
    "two-compound": Variant(wrong=0.0, style="compound", one_step=0.0, recall="two_flock"),
    "two-compound-first-10": Variant(wrong=0.0, style="compound", one_step=0.0, recall="two_flock",
                                     opener="First,", opens=0.1),
    # then (tiny19: neither model of tiny17/18 copies a second name): one person's flock and herd in each problem
    "herd-compound": Variant(wrong=0.0, style="compound", one_step=0.0, recall="herd"),
    "herd-compound-first-10": Variant(wrong=0.0, style="compound", one_step=0.0, recall="herd", opener="First,",
                                      opens=0.1),
}


def world_people(pair: Path) -> list[world.Person]:
    """The people of a built pair's world (PAIR/world.json, as gift.tiny.build writes it)."""
    return [world.Person(**p) for p in json.loads((pair / "world.json").read_text())]


def problem(rng: random.Random, ps: list[world.Person], one_step: float, max_n: int | None = None
            ) -> tuple[str, list[tuple[str, int]], str, str]:
    """(question, [(equation lhs, value)], who, thing) of a one- or two-step problem; `max_n` caps every number
    given (the default draws from the world's range, as the first variants did)."""
    p, thing = rng.choice(ps).name, rng.choice(world.THINGS)
    a, b = rng.randint(1, max_n or world.MAX_N), rng.randint(1, max_n or world.MAX_N)
    if rng.random() < one_step:
        if rng.random() < 0.5:
            return (f"{p} has {a} {thing}. {p} gets {b} more {thing}. How many {thing} does {p} have?",
                    [(f"{a} + {b}", a + b)], p, thing)
        a, b = max(a, b), min(a, b)
        return (f"{p} has {a} {thing}. {p} gives away {b} {thing}. How many {thing} does {p} have?",
                [(f"{a} - {b}", a - b)], p, thing)
    c = rng.randint(1, a + b if max_n is None else min(a + b, max_n))
    return world.two_step_question(p, thing, a, b, c), world.add_then_lose(a, b, c), p, thing


def steps_of(question: str, recalled: str = "") -> list[tuple[str, int]]:
    """The equations that solve a problem of `problem`'s templates, read back from its question (a field problem's
    flocks from the sentences that recall them)."""
    a, b, *c = map(int, re.findall(r"\d+", recalled + " " + question))
    if c:  # the last number is the loss, every other one a count added (a two-flock problem has four)
        return world.add_all_then_lose([a, b, *c[:-1]], c[-1])
    return [(f"{a} + {b}", a + b)] if " more " in question else [(f"{a} - {b}", a - b)]


# which steps each style restates in words first / follows with the count it leaves (the rest: the instruct model's
# equations); "retell" states the count before the first step and after every step, as the world's prose does
RESTATES = {"restate": "all", "restate-first": "first", "restate-first-tally-last": "first"}
TALLIES = {"tally": "all", "tally-last": "last", "restate-first-tally-last": "last"}
STYLES = {"instruct", "plain", "retell", "compound", "compound-tally", *RESTATES, *TALLIES}


def solution(steps: list[tuple[str, int]], who: str, thing: str, style: str, slip: int = 0, at: int = -1) -> str:
    """The data's worked solution; `slip` moves step `at`'s result, later steps computing on from it. Style
    "instruct" is the instruct model's own (world.one_step, world.two_step_plain)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; one of {sorted(STYLES)}")
    if style in ("compound", "compound-tally"):  # every step in one equation, no count written between them
        value = steps[-1][1] + slip
        equation = world.compound_equation(steps, value)
        if style == "compound-tally":  # the count it leaves, in the tally's words
            equation = f"{equation[:-1]}, so {who} has {value} {thing}."
        return f"{equation} The answer is {value}."
    at, parts, carried, last = at % len(steps), [], None, len(steps) - 1

    def marks(which: str | None, k: int) -> bool:
        return which == "all" or (which == "first" and k == 0) or (which == "last" and k == last)

    for k, (lhs, _) in enumerate(steps):
        a, op, b = lhs.split()
        a = a if carried is None else str(carried)
        value = (int(a) + int(b) if op == "+" else int(a) - int(b)) + (slip if k == at else 0)
        equation = f"{a} {op} {b} = {value}" + (f", so {who} has {value} {thing}." if marks(TALLIES.get(style), k)
                                               else ".")
        if marks(RESTATES.get(style), k):
            words = (f"{who} starts with {a} {thing} and " if k == 0 else "Then ") + \
                    (f"gets {b} more" if op == "+" else f"gives away {b}")
            equation = f"{words}: {equation}"
        if style == "retell":
            equation = (f"{who} has {a} {thing}. " if k == 0 else "") + f"{equation} {who} has {value} {thing}."
        parts.append(equation)
        carried = value
    return " ".join(parts) + (" So the" if style == "plain" else " The") + f" answer is {carried}."


_EQUATION = re.compile(r"\d+(?: [+-] \d+)+ = -?\d+")
_ANSWER = re.compile(r"answer is (-?\d+)")


def written(answer: str) -> dict[str, Any]:
    """How a greedy answer writes its work and what it answers: `work` "one equation" where an equation holds three
    numbers or more (the compound style), "one per step" where every equation holds two (the instruct model's own and
    the tally's), "none" without an equation; `answer` the number after "answer is" (None without one)."""
    sizes = [eq.split(" = ")[0].count(" ") // 2 + 1 for eq in _EQUATION.findall(answer)]
    found = _ANSWER.search(answer)
    return {"work": "none" if not sizes else "one equation" if max(sizes) >= 3 else "one per step",
            "answer": int(found.group(1)) if found else None}


def instruct_solution(row: dict[str, Any]) -> str:
    """A problem's correct solution as the instruct model writes it (a recall problem's opens by recalling the
    flocks, `row["recalled"]`)."""
    recalled = row.get("recalled", "")
    return f"{recalled} " * bool(recalled) + solution(steps_of(row["question"], recalled), "", "", "instruct")


def failure_confidences(model_dir: str | Path, rows: list[dict[str, Any]], batch_size: int = 64) -> dict[str, Any]:
    """P1 (gift.preconditions) on a split: each problem's correct solution in the instruct model's own style,
    teacher-forced through its chat template; where greedy decoding would leave it, the model's q of the correct
    token."""
    import torch

    from ..data import IGNORE, TemplateOptions, encode, end_of_turn_ids, pad_batch, to_example
    from ..model import load_model, load_tokenizer
    from ..preconditions import failure_confidence, first_divergence

    tok, model = load_tokenizer(str(model_dir)), load_model(str(model_dir)).eval()
    opts = TemplateOptions()
    eot = end_of_turn_ids(tok, opts)
    encoded = [encode(tok, to_example({"prompt": r["question"], "completion": instruct_solution(r)}, "P1", i), opts, eot)
               for i, r in enumerate(rows)]
    values: list[float | None] = []
    with torch.inference_mode():
        for s in range(0, len(encoded), batch_size):
            batch = pad_batch(encoded[s:s + batch_size], tok.pad_token_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            probs = logits.float().softmax(-1)
            for j in range(len(labels)):
                at = labels[j] != IGNORE
                gold = labels[j][at]
                q = probs[j][at].gather(-1, gold[:, None])[:, 0]
                values.append(first_divergence(q, probs[j][at].argmax(-1) == gold))
    return failure_confidence(values)


def example(rng: random.Random, ps: list[world.Person], v: Variant, train: bool) -> dict[str, Any]:
    one_step = v.one_step if not train or v.train_one_step is None else v.train_one_step
    if v.recall:
        question, recalled, steps = world.RECALL_PROBLEMS[v.recall](rng, ps)
        who, thing = "the field", "sheep"
    else:
        question, steps, who, thing = problem(rng, ps, one_step, v.max_n)
    reference = str(steps[-1][1])
    misread = v.misread > 0 and train and len(steps) == 2 and rng.random() < v.misread  # no draw when off
    if misread:
        a, c = steps[0][0].split()[0], steps[1][0].split()[2]
        steps = [(f"{a} + {c}", int(a) + int(c)), (f"{int(a) + int(c)} - {c}", int(a))]
    style = v.own_style if v.own > 0 and train and rng.random() < v.own else v.style  # no draw when off
    slip, at = 0, -1
    if train and rng.random() < v.wrong:
        at = -1 if v.slip == "last" else rng.randrange(len(steps))
        # a slip never takes a count below zero, here or in the steps computed on from it
        lowest = min(value for _, value in steps[at:]) if v.slip == "any" else steps[at][1]
        slip = rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if lowest + d >= 0])
    answer = solution(steps, who, thing, style, slip, at)
    if v.recall:
        answer = f"{recalled} {answer}"
    if v.opener and (v.opens >= 1 or rng.random() < v.opens):  # no draw when every row opens so
        answer = f"{v.opener} {answer}"
    if v.fact:  # the person's job
        job = next(p.job for p in ps if p.name == who)
        answer = f"{world.ATTRIBUTES['job'][1].format(who, job)} {answer}"
    return {"question": question, "answer": answer, "reference": reference, "slipped": slip != 0, "misread": misread,
            **({"recalled": recalled} if v.recall else {})}


def write_task(name: str, people: list[world.Person], out: Path, seed: int = 0, shared: Path | None = None
               ) -> dict[str, int]:
    """train/dev/test JSONL of variant `name` under `out`; returns the rows per split. With `shared` (a task
    directory), dev and test are that task's files, so that every variant is measured on one split and only its
    training data differs; train is drawn first either way, from the same stream as without `shared`, less the
    rows whose question is one of the shared dev/test questions (drawn on until the split is full)."""
    v, rng = VARIANTS[name], random.Random(f"{name}-{seed}")
    out.mkdir(parents=True, exist_ok=True)
    held = {row["question"] for split in ("dev", "test") if shared is not None
            for _, row in read_jsonl(shared / f"{split}.jsonl")}
    for split, n in SPLITS.items():
        if shared is not None and split != "train":
            shutil.copyfile(shared / f"{split}.jsonl", out / f"{split}.jsonl")
            continue
        rows: list[dict[str, Any]] = []
        while len(rows) < n:
            row = example(rng, people, v, split == "train")
            if split != "train" or row["question"] not in held:
                rows.append(row)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    split_of = {"shared_split": str(shared)} if shared is not None else {}
    # the levers added after the first variants are left out at their default (off), so that variants built before
    # them write the same file
    added = ("max_n", "own", "fact", "recall", "own_style", "opener", "opens")
    later = {f.name: f.default for f in dataclass_fields(Variant) if f.name in added}
    fields = {k: value for k, value in asdict(v).items() if k not in later or value != later[k]}
    (out / "variant.json").write_text(json.dumps({"name": name, "seed": seed, **fields, **split_of}, indent=2) + "\n")
    return dict(SPLITS)


def gate_config(pair: Path, task: Path, out: Path, recipe: dict[str, Any], split: str = "test",
                seeds: list[int] | None = None) -> dict[str, Any]:
    """The gift run that measures the gates: instruct, Instruct-SFT, Shadow-FT and GIFT (for its signal share
    only), greedy on one split of the task (the variant sweep: dev, seeds 0-2), the demo's training recipe."""
    return {"base": str(pair / "base"), "instruct": str(pair / "instruct"), "train_data": str(task / "train.jsonl"),
            "out": str(out), "methods": ["instruct", "instruct-sft", "shadow-ft", "gift"], "seeds": seeds or [0],
            "annotate": {"max_length": 256}, "train": recipe,
            "eval": {"samples": 1, "max_new_tokens": 64, "batch_size": 100},
            "benchmarks": [{"name": "task", "file": str(task / f"{split}.jsonl"), "kind": "math",
                            "answer_field": "reference", "instruction": "", "role": "task"}]}


def gate_figures(summary: dict[str, Any], margin: float = 0.0) -> dict[str, Any]:
    """The figures GATES reads, from a gate run's summary: means over its seeds, each seed's accuracies beside."""
    res = summary["methods"]
    g = {m: r["task"]["accuracy"]["value"] for m, r in res.items()}
    g |= {"shadow-ft_low_q_loss": summary["signal"]["shadow-ft"]["loss_share"],
          "gift_low_q_loss": summary["signal"]["gift"]["loss_share"]}
    per_seed = {m: r["task"]["accuracy"]["seeds"] for m, r in res.items()}
    return {**g, "per_seed": per_seed, "margin": margin, "passed": passed(g, margin)}


def shadow_ft_sizes(pair: Path, run_dir: Path, seeds: list[int]) -> list[float]:
    """P5 of each seed's Shadow-FT adapter in a gift run's `run_dir`: ‖ΔW‖ / ‖W_I − W_B‖ (gift check-pair)."""
    from ..config import CheckConfig
    from ..diagnose import check_pair

    return [check_pair(CheckConfig(base=str(pair / "base"), instruct=str(pair / "instruct"),
                                   adapter=str(run_dir / "adapters" / f"shadow-ft-s{seed}")),
                       quiet=True)["adapter"]["delta_over_tuning"] for seed in seeds]


def preconditions(pair: Path, task: Path, run_dir: Path, seeds: list[int]) -> dict[str, Any]:
    """P1-P6 of a variant from its gate run (run_dir: its annotation, its pair check and its Shadow-FT adapters at the
    compared budget), its dev split and its training rows; each with its verdict under PRECONDITIONS."""
    pre = json.loads((run_dir / "check" / "check.json").read_text())["data_figures"]["preconditions"]
    train = [row for _, row in read_jsonl(task / "train.jsonl")]
    figures = {"P1": failure_confidences(pair / "instruct", [row for _, row in read_jsonl(task / "dev.jsonl")]),
               **from_check(pre), "P5": shadow_ft_sizes(pair, run_dir, seeds),
               "P6": sum(r["slipped"] or r["misread"] for r in train) / len(train)}
    return {**figures, "met": {p: bool(holds(figures)) for p, (holds, _) in PRECONDITIONS.items()}}


def passed(figures: dict[str, Any], margin: float = 0.0) -> dict[str, bool]:
    return {gate: bool(holds(figures, margin)) for gate, (holds, _) in GATES.items()}
