"""The synthetic world of the bundled tiny pair: invented people with facts, small-number arithmetic,
word problems, and general text skills. Everything is generated from a seed.

- pretraining corpus (plain text, no chat template): facts, arithmetic, one-step word problems, lists
- instruction tuning (chat): general skills (copy, reverse, first/last word, count, sort), fact
  questions (open and multiple choice) and short arithmetic
- tasks with train/dev/test splits: `math` (two-step word problems with worked solutions, GSM8K style:
  the task to learn), `knowledge` (multiple choice about the people: knowledge the instruct model holds,
  as MMLU-STEM in the paper) and `retention` (held-out general-skill probes: instruction following)
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

SYLLABLES = ["ka", "lo", "mi", "ru", "te", "zo", "ba", "ni", "vo", "shi", "del", "mar", "tor", "pen", "qui", "sa"]
TOWNS = ["Kelm", "Tarn", "Vost", "Mirra", "Dune", "Holt", "Brisk", "Olan", "Pell", "Rook", "Sild", "Wend"]
JOBS = ["baker", "farmer", "pilot", "singer", "doctor", "tailor", "miner", "painter"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "pink", "brown"]
THINGS = ["apples", "coins", "books", "pens", "cups", "stones", "shells", "cards"]
WORDS = ["cat", "dog", "sun", "tree", "boat", "cake", "milk", "rain", "bird", "lamp", "door", "fish", "hat", "road",
         "star", "ship", "bell", "rose", "sand", "wolf"]
MAX_N = 20  # numbers in problems stay small so each is a single token and sums are learnable


@dataclass
class Person:
    name: str
    town: str
    job: str
    color: str


def people(rng: random.Random, n: int) -> list[Person]:
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize())
    return [Person(name, rng.choice(TOWNS), rng.choice(JOBS), rng.choice(COLORS)) for name in sorted(names)]


def fact_sentences(p: Person) -> list[str]:
    return [f"{p.name} lives in {p.town}.", f"{p.name} is a {p.job}.", f"{p.name} likes {p.color}."]


def arithmetic(rng: random.Random) -> tuple[str, int]:
    """a + b with a, b <= MAX_N, or a - b with b <= a <= 2·MAX_N: every step of the word problems."""
    if rng.random() < 0.5:
        a, b = rng.randint(0, MAX_N), rng.randint(0, MAX_N)
        return f"{a} + {b} = {a + b}", a + b
    a = rng.randint(0, 2 * MAX_N)
    b = rng.randint(0, a)
    return f"{a} - {b} = {a - b}", a - b


def one_step(rng: random.Random, ps: list[Person]) -> tuple[str, str]:
    """(problem, worked solution) with one operation."""
    p, thing = rng.choice(ps).name, rng.choice(THINGS)
    a, b = rng.randint(1, MAX_N), rng.randint(1, MAX_N)
    if rng.random() < 0.5:
        return (f"{p} has {a} {thing}. {p} gets {b} more {thing}. How many {thing} does {p} have?",
                f"{p} has {a} + {b} = {a + b} {thing}. The answer is {a + b}.")
    a, b = max(a, b), min(a, b)
    return (f"{p} has {a} {thing}. {p} gives away {b} {thing}. How many {thing} does {p} have?",
            f"{p} has {a} - {b} = {a - b} {thing}. The answer is {a - b}.")


def two_step(rng: random.Random, ps: list[Person]) -> tuple[str, str, int]:
    """(problem, worked solution, answer): get b more, then give away c."""
    p, thing = rng.choice(ps).name, rng.choice(THINGS)
    a, b = rng.randint(1, MAX_N), rng.randint(1, MAX_N)
    c = rng.randint(1, a + b)
    return (f"{p} has {a} {thing}. {p} gets {b} more {thing} and then gives away {c} {thing}. "
            f"How many {thing} does {p} have now?",
            f"{p} has {a} + {b} = {a + b} {thing}. Then {p} has {a + b} - {c} = {a + b - c} {thing}. "
            f"The answer is {a + b - c}.", a + b - c)


def pretraining_doc(rng: random.Random, ps: list[Person]) -> str:
    """One plain-text document of the base model's corpus."""
    r = rng.random()
    if r < 0.35:
        return " ".join(s for p in rng.sample(ps, 2) for s in fact_sentences(p))
    if r < 0.55:
        return " ".join(arithmetic(rng)[0] + "." for _ in range(4))
    if r < 0.85:
        return " ".join(one_step(rng, ps))
    return "Words: " + " ".join(rng.sample(WORDS, rng.randint(3, 6))) + "."


def _words(rng: random.Random) -> list[str]:
    return rng.sample(WORDS, rng.randint(3, 5))


def general_skill(rng: random.Random, kind: str | None = None) -> dict[str, str]:
    """A chat example of one general skill; these are what retention measures."""
    kind = kind or rng.choice(SKILLS)
    ws = _words(rng)
    line = " ".join(ws)
    if kind == "copy":
        return {"prompt": f"Repeat the words: {line}", "completion": line}
    if kind == "reverse":
        return {"prompt": f"Reverse the words: {line}", "completion": " ".join(reversed(ws))}
    if kind == "first":
        return {"prompt": f"What is the first word? {line}", "completion": ws[0]}
    if kind == "last":
        return {"prompt": f"What is the last word? {line}", "completion": ws[-1]}
    if kind == "count":
        return {"prompt": f"How many words? {line}", "completion": str(len(ws))}
    nums = rng.sample(range(MAX_N + 1), rng.randint(3, 5))
    return {"prompt": f"Sort the numbers: {' '.join(map(str, nums))}", "completion": " ".join(map(str, sorted(nums)))}


SKILLS = ["copy", "reverse", "first", "last", "count", "sort"]


def instruct_example(rng: random.Random, ps: list[Person]) -> dict[str, str]:
    """One instruction-tuning conversation: general skills, fact questions (open and multiple choice)
    or short arithmetic."""
    r = rng.random()
    if r < 0.55:
        return general_skill(rng)
    if r < 0.65:
        ex = knowledge_example(rng, ps)
        return {"prompt": ex["question"], "completion": ex["answer"]}
    if r < 0.8:
        p = rng.choice(ps)
        q, a = rng.choice([(f"Where does {p.name} live?", f"{p.name} lives in {p.town}."),
                           (f"What is the job of {p.name}?", f"{p.name} is a {p.job}."),
                           (f"What color does {p.name} like?", f"{p.name} likes {p.color}.")])
        return {"prompt": q, "completion": a}
    text, value = arithmetic(rng)
    return {"prompt": f"What is {text.split(' =')[0]}?", "completion": f"{text}. The answer is {value}."}


def math_example(rng: random.Random, ps: list[Person]) -> dict[str, Any]:
    problem, solution, answer = two_step(rng, ps)
    return {"question": problem, "answer": solution, "reference": str(answer)}


def knowledge_example(rng: random.Random, ps: list[Person]) -> dict[str, Any]:
    p = rng.choice(ps)
    attr, options = rng.choice([("town", TOWNS), ("job", JOBS), ("color", COLORS)])
    truth = getattr(p, attr)
    choices = rng.sample([o for o in options if o != truth], 3) + [truth]
    rng.shuffle(choices)
    letter = "ABCD"[choices.index(truth)]
    question = {"town": f"Where does {p.name} live?", "job": f"What is the job of {p.name}?",
                "color": f"What color does {p.name} like?"}[attr]
    opts = " ".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(choices))
    return {"question": f"{question} {opts}", "answer": f"The answer is {letter}.", "reference": letter}


def retention_example(rng: random.Random) -> dict[str, Any]:
    ex = general_skill(rng)
    return {"question": ex["prompt"], "answer": ex["completion"], "reference": ex["completion"]}
