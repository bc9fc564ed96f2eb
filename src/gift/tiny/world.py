"""The synthetic world of the bundled tiny pair, built to behave like a real base/instruct pair.

In a real pair pretraining teaches nearly everything, post-training mostly elicits it in the chat format
with a small weight change, and the instruct model already half-knows the task it is adapted to. So:

- pretraining corpus (plain text): facts about invented people, the same facts as open and multiple-choice
  questions, the general skills (copy, reverse, first/last word, count, sort) and arithmetic, all as
  "Question:\\n…\\nAnswer:\\n…" documents as on the web, plus a thin share of two-step word problems in
  the plain answer style (the base's partial skill on the task) and, as web text holds some, of chat logs
  of questions about the people (the chat template's markers, never a general skill in them: as real
  bases, base reads the chat format but does not follow instructions in it)
- instruction tuning (chat, a few hundred steps): the same kinds of question in the chat format, in the
  instruct model's own short answer style
- tasks with train/dev/test splits: `math` (two-step word problems whose worked solutions are written in
  a style of their own, as NuminaMath-CoT's differ from an instruct model's: the task to learn),
  `knowledge` (multiple choice about the people, as MMLU-STEM in the paper) and `retention` (held-out
  general-skill probes: instruction following, as IFEval in the paper)
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

SYLLABLES = ["ka", "lo", "mi", "ru", "te", "zo", "ba", "ni", "vo", "shi", "del", "mar", "tor", "pen", "qui", "sa"]
TOWNS = ["Kelm", "Tarn", "Vost", "Mirra", "Dune", "Holt", "Brisk", "Olan", "Pell", "Rook", "Sild", "Wend"]
JOBS = ["baker", "farmer", "pilot", "singer", "doctor", "tailor", "miner", "painter"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "pink", "brown"]
THINGS = ["apples", "coins", "books", "pens", "cups", "stones", "shells", "cards"]
WORDS = ["cat", "dog", "sun", "tree", "boat", "cake", "milk", "rain", "bird", "lamp", "door", "fish", "hat", "road",
         "star", "ship", "bell", "rose", "sand", "wolf"]
SKILLS = ["copy", "reverse", "first", "last", "count", "sort"]
MAX_N = 20  # numbers in problems stay small so each is a single token and sums are learnable
SHEEP_MAX = 9  # a flock, the world's numeric fact (worlds built with one): two flocks stay within the sums
ATTRIBUTES = {"town": ("Where does {} live?", "{} lives in {}.", TOWNS),
              "job": ("What is the job of {}?", "{} is a {}.", JOBS),
              "color": ("What color does {} like?", "{} likes {}.", COLORS)}


@dataclass
class Person:
    name: str
    town: str
    job: str
    color: str
    sheep: int | None = None  # how many sheep the person has, in worlds with a numeric fact
    rumour: int | None = None  # a wrong count the web repeats for the person, in worlds with rumours
    goats: int | None = None  # a second count of the same kind, in worlds built with goats
    goat_rumour: int | None = None  # the herd's wrong count, in worlds with goats and rumours


def people(rng: random.Random, n: int, sheep: bool = False, rumours: bool = False, goats: bool = False
           ) -> list[Person]:
    """`n` people; with `sheep`, each with a flock too, drawn after the rest so that the other facts are the same,
    with `rumours` a wrong count for each flock, drawn after the flocks, and with `goats` a herd (and its rumour)
    drawn after those."""
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize())
    ps = [Person(name, rng.choice(TOWNS), rng.choice(JOBS), rng.choice(COLORS)) for name in sorted(names)]
    for p in ps if sheep else []:
        p.sheep = rng.randint(1, SHEEP_MAX)
    for p in ps if sheep and rumours else []:
        p.rumour = rng.choice([k for k in range(1, SHEEP_MAX + 1) if k != p.sheep])
    for p in ps if sheep and goats else []:
        p.goats = rng.randint(1, SHEEP_MAX)
        p.goat_rumour = rng.choice([k for k in range(1, SHEEP_MAX + 1) if k != p.goats]) if rumours else None
    return ps


def qa(prompt: str, completion: str) -> dict[str, str]:
    return {"prompt": prompt, "completion": completion}


def plain(ex: dict[str, str]) -> str:
    """A question and answer as a plain-text document: the layout the base model learns them in.

    Prompt and answer each start a line, as the chat template writes them, so that they are the same
    tokens in both layouts (byte-level BPE makes "cat" after a newline and " cat" after a space two
    different tokens); what differs is only the markers around them, which instruction tuning teaches.
    """
    return f"Question:\n{ex['prompt']}\nAnswer:\n{ex['completion']}"


# ---- the kinds of question ----

def general_skill(rng: random.Random, kind: str | None = None) -> dict[str, str]:
    """One general skill: what retention measures."""
    kind = kind or rng.choice(SKILLS)
    ws = rng.sample(WORDS, rng.randint(3, 5))
    line = " ".join(ws)
    if kind == "copy":
        return qa(f"Repeat the words: {line}", line)
    if kind == "reverse":
        return qa(f"Reverse the words: {line}", " ".join(reversed(ws)))
    if kind == "first":
        return qa(f"What is the first word? {line}", ws[0])
    if kind == "last":
        return qa(f"What is the last word? {line}", ws[-1])
    if kind == "count":
        return qa(f"How many words? {line}", str(len(ws)))
    nums = rng.sample(range(MAX_N + 1), rng.randint(3, 5))
    return qa(f"Sort the numbers: {' '.join(map(str, nums))}", " ".join(map(str, sorted(nums))))


def fact_question(rng: random.Random, ps: list[Person]) -> dict[str, str]:
    p = rng.choice(ps)
    attr = rng.choice(list(ATTRIBUTES))
    question, answer, _ = ATTRIBUTES[attr]
    return qa(question.format(p.name), answer.format(p.name, getattr(p, attr)))


def choice_question(rng: random.Random, ps: list[Person]) -> tuple[dict[str, str], str]:
    """A 4-way multiple-choice question on one line per option (lm-eval's MMLU layout), and its letter."""
    p = rng.choice(ps)
    attr = rng.choice(list(ATTRIBUTES))
    question, _, options = ATTRIBUTES[attr]
    truth = getattr(p, attr)
    choices = rng.sample([o for o in options if o != truth], 3) + [truth]
    rng.shuffle(choices)
    letter = "ABCD"[choices.index(truth)]
    opts = "\n".join(f"{'ABCD'[i]}. {c}" for i, c in enumerate(choices))
    return qa(f"{question.format(p.name)}\n{opts}", f"The answer is {letter}."), letter


def arithmetic(rng: random.Random) -> tuple[str, int]:
    """a + b with a, b <= MAX_N, or a - b with b <= a <= 2·MAX_N: every step of the word problems."""
    if rng.random() < 0.5:
        a, b = rng.randint(0, MAX_N), rng.randint(0, MAX_N)
        return f"{a} + {b}", a + b
    a = rng.randint(0, 2 * MAX_N)
    b = rng.randint(0, a)
    return f"{a} - {b}", a - b


def sum_question(rng: random.Random) -> dict[str, str]:
    text, value = arithmetic(rng)
    return qa(f"What is {text}?", f"{text} = {value}. The answer is {value}.")


def one_step(rng: random.Random, ps: list[Person]) -> dict[str, str]:
    """A one-step word problem in the plain answer style."""
    p, thing = rng.choice(ps).name, rng.choice(THINGS)
    a, b = rng.randint(1, MAX_N), rng.randint(1, MAX_N)
    if rng.random() < 0.5:
        return qa(f"{p} has {a} {thing}. {p} gets {b} more {thing}. How many {thing} does {p} have?",
                  f"{a} + {b} = {a + b}. The answer is {a + b}.")
    a, b = max(a, b), min(a, b)
    return qa(f"{p} has {a} {thing}. {p} gives away {b} {thing}. How many {thing} does {p} have?",
              f"{a} - {b} = {a - b}. The answer is {a - b}.")


def two_step_numbers(rng: random.Random, ps: list[Person]) -> tuple[str, str, int, int, int]:
    p, thing = rng.choice(ps).name, rng.choice(THINGS)
    a, b = rng.randint(1, MAX_N), rng.randint(1, MAX_N)
    return p, thing, a, b, rng.randint(1, a + b)


def add_then_lose(a: int, b: int, c: int) -> list[tuple[str, int]]:
    """The equations (lhs, value) of a two-step problem: b more, then c taken away."""
    return add_all_then_lose([a, b], c)


def add_all_then_lose(counts: list[int], c: int) -> list[tuple[str, int]]:
    """The equations (lhs, value) of adding `counts` one by one, then taking c away."""
    steps, total = [], counts[0]
    for n in counts[1:]:
        steps.append((f"{total} + {n}", total + n))
        total += n
    return [*steps, (f"{total} - {c}", total - c)]


def equations(steps: list[tuple[str, int]], step: str = "{lhs} = {value}.") -> str:
    """Each equation written as `step` (default the plain style, the instruct model's own)."""
    return " ".join(step.format(lhs=lhs, value=value) for lhs, value in steps)


def compound_equation(steps: list[tuple[str, int]], value: int | None = None) -> str:
    """Every step of a problem in one equation ("4 + 3 - 2 = 5."), equal to `value` (default the last step's)."""
    rest = "".join(" " + lhs.split(maxsplit=1)[1] for lhs, _ in steps[1:])
    return f"{steps[0][0]}{rest} = {steps[-1][1] if value is None else value}."


def worked(steps: list[tuple[str, int]], write: Callable[[list[tuple[str, int]]], str] = equations) -> str:
    """A solution: the steps as `write` writes them, then the answer sentence."""
    return f"{write(steps)} The answer is {steps[-1][1]}."


def two_step_question(p: str, thing: str, a: int, b: int, c: int) -> str:
    return (f"{p} has {a} {thing}. {p} gets {b} more {thing} and then gives away {c} {thing}. "
            f"How many {thing} does {p} have now?")


def two_step_plain(rng: random.Random, ps: list[Person]) -> dict[str, str]:
    """A two-step problem answered in the plain style of the corpus and of the instruct model."""
    p, thing, a, b, c = two_step_numbers(rng, ps)
    return qa(two_step_question(p, thing, a, b, c), worked(add_then_lose(a, b, c)))


def two_step_compound(rng: random.Random, ps: list[Person]) -> dict[str, str]:
    """A two-step problem (no flock) answered in one equation: the compound style away from the flock task."""
    p, thing, a, b, c = two_step_numbers(rng, ps)
    return qa(two_step_question(p, thing, a, b, c), worked(add_then_lose(a, b, c), compound_equation))


# ---- the numeric fact: what instruction tuning teaches better than pretraining ----
# The web states a person's flock inconsistently (`truth`: the share of statements that are right, `rumour`: the
# share that repeat one wrong count, the rest any count), curated post-training states it right: the base half-knows
# it, the instruct model is surer of it, as a real instruct model is surer of reasoning steps its base gives a fair
# but low probability. With a rumour more common than the truth the base's likeliest count is wrong.

def flock(rng: random.Random, p: Person, truth: float = 1.0, rumour: float = 0.0, goats: bool = False) -> int:
    """The flock (with `goats`, the herd) a text states for `p`: right with probability `truth` (no draw at 1), the
    person's rumour with probability `rumour`, else any count."""
    count, wrong = (p.goats, p.goat_rumour) if goats else (p.sheep, p.rumour)
    if count is None:
        raise ValueError("this world has no goats: build it with goats=true" if goats else
                         "this world has no flocks: build it with sheep_share > 0")
    if truth >= 1.0:
        return count
    u = rng.random()
    if u < truth:
        return count
    if u < truth + rumour:
        if wrong is None:
            raise ValueError("this world has no rumours: build it with sheep_rumour > 0")
        return wrong
    return rng.randint(1, SHEEP_MAX)


def flock_sentence(name: str, n: int, animals: str = "sheep") -> str:
    return f"{name} has {n} {animals}."


def sheep_question(rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0, goats: bool = False
                   ) -> dict[str, str]:
    """A question on one person's flock (with `goats`, herd) and its answer, the count drawn as `flock` draws it."""
    p, animals = rng.choice(ps), "goats" if goats else "sheep"
    return qa(f"How many {animals} does {p.name} have?", flock_sentence(p.name, flock(rng, p, truth, rumour, goats),
                                                                          animals))


def field_question(first: str, second: str, c: int) -> str:
    """Two flocks recalled, added and a loss taken away: the task a numeric fact enters."""
    return (f"{first} and {second} put their sheep in one field. Then {c} sheep run away. "
            "How many sheep are in the field now?")


def field_problem(rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0
                  ) -> tuple[str, str, list[tuple[str, int]]]:
    """(question, the flocks as stated, [(equation lhs, value)]) of a field problem."""
    p, q = rng.sample(ps, 2)
    a, b = flock(rng, p, truth, rumour), flock(rng, q, truth, rumour)
    c = rng.randint(1, a + b)
    facts = f"{flock_sentence(p.name, a)} {flock_sentence(q.name, b)}"
    return field_question(p.name, q.name, c), facts, add_then_lose(a, b, c)


def one_flock_problem(rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0,
                      most: int = SHEEP_MAX) -> tuple[str, str, list[tuple[str, int]]]:
    """(question, the flock as stated, [(equation lhs, value)]) of a one-flock problem: a two-step problem whose
    first number is a flock to recall, then 1-`most` sheep come. The name opens the question, where the world's other
    problems put it (the field problem's second name, mid-question, is one neither model of tiny8 learnt to copy)."""
    p = rng.choice(ps)
    a, b = flock(rng, p, truth, rumour), rng.randint(1, most)
    c = rng.randint(1, a + b)
    question = (f"{p.name} takes the flock to a field. Then {b} more sheep come and {c} sheep run away. "
                "How many sheep are in the field now?")
    return question, flock_sentence(p.name, a), add_then_lose(a, b, c)


def two_flock_problem(rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0
                      ) -> tuple[str, str, list[tuple[str, int]]]:
    """(question, the flocks as stated, [(equation lhs, value)]) of a two-flock problem: two flocks to recall, both
    names opening the question, then 1-9 sheep come and some run away (three steps)."""
    p, q = rng.sample(ps, 2)
    a, b, c = flock(rng, p, truth, rumour), flock(rng, q, truth, rumour), rng.randint(1, SHEEP_MAX)
    d = rng.randint(1, a + b + c)
    question = (f"{p.name} and {q.name} put their sheep in one field. Then {c} more sheep come and {d} sheep run "
                "away. How many sheep are in the field now?")
    return question, f"{flock_sentence(p.name, a)} {flock_sentence(q.name, b)}", add_all_then_lose([a, b, c], d)


def herd_problem(rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0
                 ) -> tuple[str, str, list[tuple[str, int]]]:
    """(question, the counts as stated, [(equation lhs, value)]) of a herd problem: one person's flock and herd to
    recall, the name opening the question (the one place this world's models copy a name from), then some run away."""
    p = rng.choice(ps)
    a, b = flock(rng, p, truth, rumour), flock(rng, p, truth, rumour, True)
    c = rng.randint(1, a + b)
    question = (f"{p.name} takes the sheep and the goats to a field. Then {c} animals run away. "
                "How many animals are in the field now?")
    return question, f"{flock_sentence(p.name, a)} {flock_sentence(p.name, b, 'goats')}", add_then_lose(a, b, c)


# problems on flocks they do not state; "one_flock_wide" draws the sheep that come over the world's range (its
# documents: the kinds one_flock_wide and one_flock_wide_compound, drawn only where a mix names them; two_flock's:
# two_flock and two_flock_compound)
RECALL_PROBLEMS = {"field": field_problem, "one_flock": one_flock_problem,
                   "one_flock_wide": partial(one_flock_problem, most=MAX_N), "two_flock": two_flock_problem,
                   "herd": herd_problem}


def _recall_qa(problem: Callable[..., tuple[str, str, list[tuple[str, int]]]], rng: random.Random,
               ps: list[Person], truth: float = 1.0, rumour: float = 0.0,
               write: Callable[[list[tuple[str, int]]], str] = equations) -> dict[str, str]:
    """A recall problem answered: the flocks recalled, then the steps as `write` writes them (default the plain
    style, the instruct model's equations)."""
    question, facts, steps = problem(rng, ps, truth, rumour)
    return qa(question, f"{facts} {worked(steps, write)}")


def one_flock_tally(rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0) -> dict[str, str]:
    """A one-flock problem answered keeping a tally after each step: the task's "tally" style (regime.solution's
    words, with the field as who), as some web text writes solutions, for a base that has read that style."""
    return _recall_qa(one_flock_problem, rng, ps, truth, rumour,
                      lambda steps: equations(steps, "{lhs} = {value}, so the field has {value} sheep."))


def _answered(problem: str, write: Callable[[list[tuple[str, int]]], str] = equations) -> Callable[..., dict[str, str]]:
    """A kind of document: a problem of RECALL_PROBLEMS answered by recalling its counts, then its steps as `write`
    writes them (default the instruct model's equations; `compound_equation`: the task's compound style, as some web
    text skips steps)."""
    return partial(_recall_qa, RECALL_PROBLEMS[problem], write=write)


# ---- the corpora ----

# pretraining: (share, maker); shares of documents, the two-step share being the base's partial task skill
PRETRAIN_MIX = [(0.12, "facts"), (0.10, "fact_question"), (0.12, "choice_question"), (0.40, "general_skill"),
                (0.08, "sum_question"), (0.13, "one_step"), (0.05, "two_step_plain")]
# instruction tuning: the same kinds, as chats in the instruct model's answer style (the tokenizer's sample of
# chats; the bundled pair's instruction tuning sets its own weights, TinyConfig.instruct_mix)
INSTRUCT_MIX = {"general_skill": 0.50, "fact_question": 0.10, "choice_question": 0.15, "sum_question": 0.10,
                "one_step": 0.10, "two_step_plain": 0.05}
SHEEP_KINDS = {"sheep_question": sheep_question, "sheep_problem": _answered("field"), "one_flock": _answered("one_flock"),
               "one_flock_tally": one_flock_tally, "one_flock_compound": _answered("one_flock", compound_equation),
               "one_flock_wide": _answered("one_flock_wide"),
               "one_flock_wide_compound": _answered("one_flock_wide", compound_equation),
               "two_flock": _answered("two_flock"), "two_flock_compound": _answered("two_flock", compound_equation),
               "goat_question": partial(sheep_question, goats=True), "herd": _answered("herd"),
               "herd_compound": _answered("herd", compound_equation)}
# every kind a chat, a chat log or an extra prose document can be
KINDS = (*INSTRUCT_MIX, "two_step_compound", *SHEEP_KINDS)


def _make(kind: str, rng: random.Random, ps: list[Person], truth: float = 1.0, rumour: float = 0.0) -> dict[str, str]:
    """One question and answer of `kind`; the flocks it states drawn as `flock` draws them."""
    if kind in SHEEP_KINDS:
        return SHEEP_KINDS[kind](rng, ps, truth, rumour)
    if kind == "general_skill":
        return general_skill(rng)
    if kind == "sum_question":
        return sum_question(rng)
    if kind == "choice_question":
        return choice_question(rng, ps)[0]
    return {"fact_question": fact_question, "one_step": one_step, "two_step_plain": two_step_plain,
            "two_step_compound": two_step_compound}[kind](rng, ps)


def _pick(rng: random.Random, mix: list[tuple[float, str]]) -> str:
    return rng.choices([k for _, k in mix], weights=[w for w, _ in mix])[0]


def chat_log(ex: dict[str, str]) -> str:
    """A question and answer as a chat log in the ChatML layout, as web text holds some."""
    return f"<|im_start|>user\n{ex['prompt']}<|im_end|>\n<|im_start|>assistant\n{ex['completion']}<|im_end|>"


def pretraining_doc(rng: random.Random, ps: list[Person], two_step_share: float | None = None,
                    chat_log_share: float = 0.0, chat_log_mix: dict[str, float] | None = None,
                    sheep_share: float = 0.0, sheep_truth: float = 1.0,
                    prose_mix: dict[str, float] | None = None, sheep_rumour: float = 0.0) -> str:
    """One document of the base model's corpus: plain text, and with `chat_log_share` some chat logs, of
    questions about the people or, with `chat_log_mix`, of those kinds in those weights (never the general
    skills, so base does not learn to follow instructions). With `sheep_share`, that share of documents state two
    people's flocks, `prose_mix` adds documents of those kinds in the plain layout in those weights (e.g. the base's
    partial skill on field problems), and every flock the corpus states (chat logs included) is right with
    probability `sheep_truth` and the person's rumour with probability `sheep_rumour`."""
    mix = PRETRAIN_MIX if two_step_share is None else [(w, k) for w, k in PRETRAIN_MIX if k != "two_step_plain"] + [
        (two_step_share, "two_step_plain")]
    extra = [(share, kind) for share, kind in ((chat_log_share, "chat_log"), (sheep_share, "flocks"),
                                               *((w, k) for k, w in (prose_mix or {}).items())) if share]
    kind = _pick(rng, mix + extra)
    if kind == "chat_log":
        if chat_log_mix is None:
            return chat_log(fact_question(rng, ps))
        if "general_skill" in chat_log_mix:
            raise ValueError("chat logs never hold the general skills: base must not learn to follow instructions")
        return chat_log(_make(_pick(rng, [(w, k) for k, w in chat_log_mix.items()]), rng, ps, sheep_truth, sheep_rumour))
    if kind == "facts":
        return " ".join(ATTRIBUTES[a][1].format(p.name, getattr(p, a)) for p in rng.sample(ps, 2) for a in ATTRIBUTES)
    if kind == "flocks":  # and their herds, in worlds with goats
        return " ".join(flock_sentence(p.name, flock(rng, p, sheep_truth, sheep_rumour)) + (
            "" if p.goats is None else " " + flock_sentence(p.name, flock(rng, p, sheep_truth, sheep_rumour, True), "goats"))
            for p in rng.sample(ps, 2))
    return plain(_make(kind, rng, ps, sheep_truth, sheep_rumour))


def instruct_example(rng: random.Random, ps: list[Person], mix: dict[str, float] | None = None) -> dict[str, str]:
    """One instruction-tuning conversation (prompt/completion); `mix`: weight per kind (INSTRUCT_MIX)."""
    return _make(_pick(rng, [(w, k) for k, w in (mix or INSTRUCT_MIX).items()]), rng, ps)


# ---- the task splits ----

def math_example(rng: random.Random, ps: list[Person]) -> dict[str, Any]:
    """A two-step problem with a worked solution in the task's own style (not the instruct model's)."""
    p, thing, a, b, c = two_step_numbers(rng, ps)
    solution = (f"First, {p} gets {b} more {thing}: {a} + {b} = {a + b}. "
                f"Next, {p} gives away {c}: {a + b} - {c} = {a + b - c}. So the final answer is {a + b - c}.")
    return {"question": two_step_question(p, thing, a, b, c), "answer": solution, "reference": str(a + b - c)}


def knowledge_example(rng: random.Random, ps: list[Person]) -> dict[str, Any]:
    ex, letter = choice_question(rng, ps)
    return {"question": ex["prompt"], "answer": ex["completion"], "reference": letter}


def skill_of(question: str) -> str:
    """Which general skill a retention question probes."""
    prefixes = {"Repeat": "copy", "Reverse": "reverse", "What is the first": "first", "What is the last": "last",
                "How many": "count", "Sort": "sort"}
    return next(kind for prefix, kind in prefixes.items() if question.startswith(prefix))


def retention_example(rng: random.Random) -> dict[str, Any]:
    ex = general_skill(rng)
    return {"question": ex["prompt"], "answer": ex["completion"], "reference": ex["completion"]}
