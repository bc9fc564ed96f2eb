"""The paper-regime task's generator: slips only in training solutions, at the variant's share; references are
always the true answers; a slip moves one step's result and later steps compute on from it."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from gift.data import read_jsonl
from gift.tiny import world
from gift.tiny.regime import (
    PRECONDITIONS,
    VARIANTS,
    example,
    instruct_solution,
    problem,
    solution,
    steps_of,
    write_task,
    written,
)
from tests.conftest import load_script


@pytest.fixture(scope="module")
def people():
    # flocks (and herds) for the recall variants; the rest never read them
    return world.people(random.Random(0), 8, sheep=True, goats=True)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_slips_are_in_training_rows_only_and_at_the_share(name, people, tmp_path):
    write_task(name, people, tmp_path)
    rows = {s: [json.loads(line) for line in (tmp_path / f"{s}.jsonl").read_text().splitlines()]
            for s in ("train", "dev", "test")}
    share = sum(r["slipped"] for r in rows["train"]) / len(rows["train"])
    assert share == pytest.approx(VARIANTS[name].wrong, abs=0.03)
    assert not any(r["slipped"] for s in ("dev", "test") for r in rows[s])
    for r in rows["train"] + rows["test"]:
        stated = re.search(r"[Tt]he answer is (\d+)\.$", r["answer"]).group(1)
        if not r["misread"]:  # a misread one is checked below
            assert (stated == r["reference"]) == (not r["slipped"])
    v = VARIANTS[name]
    for split, share in (("test", v.one_step), ("train", v.one_step if v.train_one_step is None else v.train_one_step)):
        one_step = sum(not re.search("then gives away|run away", r["question"]) for r in rows[split]) / len(rows[split])
        assert one_step == pytest.approx(share, abs=0.08), split


@pytest.mark.parametrize("name", ["near-style-wrong-50", "plain-wrong-50", "small-tally-wrong-10"])
def test_a_slip_moves_one_step_and_later_steps_compute_on_from_it(name, people):
    v, rng, where = VARIANTS[name], random.Random(3), set()
    for _ in range(300):
        r = example(rng, people, v, train=True)
        equations = re.findall(r"(\d+) ([+-]) (\d+) = (\d+)", r["answer"])
        wrong = [k for k, (a, op, b, value) in enumerate(equations)
                 if int(value) != (int(a) + int(b) if op == "+" else int(a) - int(b))]
        assert len(wrong) == r["slipped"] and all(int(e[3]) >= 0 for e in equations)
        for (_, _, _, value), (a, _, _, _) in zip(equations, equations[1:]):
            assert a == value  # each step starts from the previous step's stated result
        where |= {(len(equations), k) for k in wrong}
        assert v.max_n is None or max(map(int, re.findall(r"\d+", r["question"]))) <= v.max_n
        if v.style == "restate":
            assert r["answer"].split(":")[0].endswith("more") or "gives away" in r["answer"].split(":")[0]
        elif v.style == "tally":  # each equation followed by the count it leaves, in the instruct model's closing
            assert re.fullmatch(r"(\d+ [+-] \d+ = (\d+), so \w+ has \2 \w+\. )+The answer is \d+\.", r["answer"])
        else:
            assert re.fullmatch(r"(\d+ [+-] \d+ = \d+\. )+So the answer is \d+\.", r["answer"])
    expected = {(1, 0), (2, 1)} if v.slip == "last" else {(1, 0), (2, 0), (2, 1)}
    assert where == {w for w in expected if v.one_step > 0 or w[0] == 2}


def test_a_misread_solution_adds_the_number_given_away_and_computes_on_correctly(people, tmp_path):
    v = VARIANTS["plain-misread-70"]
    write_task("plain-misread-70", people, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    two_step = [r for r in rows if "then gives away" in r["question"]]
    assert sum(r["misread"] for r in two_step) / len(two_step) == pytest.approx(v.misread, abs=0.04)
    assert not any(r["misread"] for r in rows if r not in two_step)
    for r in two_step:
        a, b, c = map(int, re.findall(r"\d+", r["question"]))
        first = re.match(r"(\d+) \+ (\d+) = (\d+)\. \1?", r["answer"]).groups()
        assert first == (str(a), str(c if r["misread"] else b), str(a + (c if r["misread"] else b)))
        assert r["answer"].endswith(f"answer is {a if r['misread'] else a + b - c}.")
        assert r["reference"] == str(a + b - c)
    for split in ("dev", "test"):
        assert not any(json.loads(line)["misread"] for line in (tmp_path / f"{split}.jsonl").read_text().splitlines())


def test_a_shared_split_keeps_the_variants_own_training_rows_and_takes_dev_and_test(people, tmp_path):
    """--sweep: every variant is measured on one dev/test split; only its training data is its own, drawn as
    without the shared split less any question of that split (the shipped task's own draw has 3 test and 2 dev
    questions in train)."""
    own, shared, other = tmp_path / "own", tmp_path / "shared", tmp_path / "other"
    write_task("plain-wrong-50", people, own)
    write_task("plain-wrong-70", people, shared)
    write_task("plain-wrong-50", people, other, shared=shared)

    def rows(path: Path) -> list[dict]:
        return [row for _, row in read_jsonl(path)]

    held = {r["question"] for split in ("dev", "test") for r in rows(shared / f"{split}.jsonl")}
    mine, theirs = rows(own / "train.jsonl"), rows(other / "train.jsonl")
    assert len(theirs) == len(mine) and not any(r["question"] in held for r in theirs)
    kept = [r for r in mine if r["question"] not in held]
    assert len(kept) < len(mine) and theirs[:len(kept)] == kept  # the same stream, the overlap drawn again
    for split in ("dev", "test"):
        assert (other / f"{split}.jsonl").read_bytes() == (shared / f"{split}.jsonl").read_bytes()
        assert (own / f"{split}.jsonl").read_bytes() != (shared / f"{split}.jsonl").read_bytes()
    assert json.loads((other / "variant.json").read_text())["shared_split"] == str(shared)


def test_a_gate_met_by_less_than_the_margin_fails_with_it():
    from gift.tiny.regime import MARGIN, passed

    g = {"instruct": 0.62, "instruct-sft": 0.62 - 0.055, "shadow-ft": 0.55, "shadow-ft_low_q_loss": 0.8,
         "gift_low_q_loss": 0.3}
    assert passed(g)["the data harms it"] and not passed(g, MARGIN)["the data harms it"]
    assert passed(g, MARGIN)["instruct competent"] and passed(g, MARGIN)["plain transfer about neutral"]


def test_the_sweep_prints_the_comparison_of_each_variant_meeting_three_gates():
    script = load_script(Path(__file__).parents[2] / "scripts" / "build_paper_task.py")
    summary = {name: {"gates": {"passed": dict(zip("abcd", met))}} for name, met in
               (("four", [1, 1, 1, 1]), ("three", [1, 0, 1, 1]), ("two", [1, 0, 0, 1]))}
    lines = script.compare_commands(summary, Path("runs/v")).splitlines()[1:]
    assert lines == [f"gift run configs/tiny_paper.yaml --train-data runs/v/{n}/data/train.jsonl --seeds 0 1 2 3 4 "
                     f"--out runs/paper-{n}" for n in ("four", "three")]


def test_steps_are_read_back_from_every_question_template(people):
    rng = random.Random(5)
    for _ in range(500):
        question, steps, _, _ = problem(rng, people, 0.5)
        assert steps_of(question) == steps
    # the instruct model's own style: world.two_step_plain's and world.one_step's answers
    assert solution([("4 + 5", 9), ("9 - 2", 7)], "", "", "instruct") == "4 + 5 = 9. 9 - 2 = 7. The answer is 7."
    rng = random.Random(1)
    for make in (world.two_step_plain, world.one_step):
        row = make(rng, people)
        assert solution(steps_of(row["prompt"]), "", "", "instruct") == row["completion"]


def figures(**changes):
    good = {"P1": {"failures": 40, "median": 0.2, "below": 0.3}, "P2": 0.2, "P3": 12, "P3_runaway": 0,
            "P4": {"uniform": 0.8, "gift": 0.3}, "P5": [0.1, 0.2, 0.15], "P6": 0.1}
    return {**good, **changes}


@pytest.mark.parametrize("change, failed", [
    ({}, None),
    ({"P1": {"failures": 40, "median": 0.09, "below": 0.3}}, "P1"),
    ({"P1": {"failures": 40, "median": 0.2, "below": 0.5}}, "P1"),
    ({"P1": {"failures": 0, "median": None, "below": None}}, None),
    ({"P2": 0.51}, "P2"), ({"P3_runaway": 1}, "P3"), ({"P3": 40}, None),
    ({"P4": {"uniform": 0.8, "gift": 0.14}}, "P4"), ({"P4": {"uniform": 0.91, "gift": 0.3}}, "P4"),
    ({"P5": [0.1, 0.2, 0.61]}, "P5"), ({"P6": 0.11}, "P6"),
])
def test_each_precondition_fails_alone_on_its_own_figure(change, failed):
    met = {p: bool(holds(figures(**change))) for p, (holds, _) in PRECONDITIONS.items()}
    assert [p for p, ok in met.items() if not ok] == ([failed] if failed else [])


@pytest.mark.parametrize("style, text", [
    ("tally-last", "4 + 3 = 7. 7 - 2 = 5, so Kami has 5 apples. The answer is 5."),
    ("restate-first", "Kami starts with 4 apples and gets 3 more: 4 + 3 = 7. 7 - 2 = 5. The answer is 5."),
    ("restate-first-tally-last",
     "Kami starts with 4 apples and gets 3 more: 4 + 3 = 7. 7 - 2 = 5, so Kami has 5 apples. The answer is 5."),
    ("retell", "Kami has 4 apples. 4 + 3 = 7. Kami has 7 apples. 7 - 2 = 5. Kami has 5 apples. The answer is 5."),
])
def test_the_partial_styles_mark_only_their_steps(style, text):
    assert solution([("4 + 3", 7), ("7 - 2", 5)], "Kami", "apples", style) == text
    # a slip in the first step carries on through the marks of the later ones
    slipped = solution([("4 + 3", 7), ("7 - 2", 5)], "Kami", "apples", style, slip=1, at=0)
    assert "4 + 3 = 8" in slipped and "8 - 2 = 6" in slipped and slipped.endswith("The answer is 6.")


def test_the_compound_style_writes_every_step_in_one_right_equation(people):
    assert solution([("4 + 3", 7), ("7 - 2", 5)], "Kami", "apples", "compound") == "4 + 3 - 2 = 5. The answer is 5."
    assert solution([("4 + 3", 7)], "Kami", "apples", "compound") == "4 + 3 = 7. The answer is 7."
    # a slip moves the one result and the answer with it
    assert solution([("4 + 3", 7), ("7 - 2", 5)], "", "", "compound", slip=-1) == "4 + 3 - 2 = 4. The answer is 4."
    rng = random.Random(2)
    for _ in range(100):
        r = example(rng, people, VARIANTS["flock-compound"], train=True)
        a, b, c, value = re.fullmatch(r"\w+ has (\d+) sheep\. (\d+) \+ (\d+) - (\d+) = (\d+)\. The answer is \5\.",
                                      r["answer"]).group(2, 3, 4, 5)
        assert r["answer"].startswith(r["recalled"]) and int(a) + int(b) - int(c) == int(value) == int(r["reference"])


def test_compound_tally_writes_the_count_after_the_one_equation():
    assert solution([("4 + 3", 7), ("7 - 2", 5)], "the field", "sheep", "compound-tally") == \
        "4 + 3 - 2 = 5, so the field has 5 sheep. The answer is 5."
    assert solution([("4 + 3", 7), ("7 - 2", 5)], "the field", "sheep", "compound-tally", slip=2) == \
        "4 + 3 - 2 = 7, so the field has 7 sheep. The answer is 7."


@pytest.mark.parametrize("name, other, opens", [("flock-compound-own-10", "instruct", None),
                                                 ("flock-compound-tally-25", "tally", None),
                                                 ("flock-compound-own-10-first-10", "instruct", "First, ")])
def test_mixed_variants_write_their_share_in_the_other_style_and_open_a_share(people, name, other, opens):
    """`own` rows in `own_style`, the rest in `style`; `opener` on a share `opens` of rows, whatever their style."""
    v, rng, n = VARIANTS[name], random.Random(3), 2000
    rows = [example(rng, people, v, train=True) for _ in range(n)]
    mine = 0
    for r in rows:
        body = r["answer"].removeprefix(opens) if opens else r["answer"]
        steps = steps_of(r["question"], r["recalled"])
        styles = [s for s in (v.style, other) if body == f"{r['recalled']} {solution(steps, 'the field', 'sheep', s)}"]
        assert len(styles) == 1, r["answer"]
        mine += styles == [other]
    assert abs(mine / n - v.own) < 0.03
    opened = sum(r["answer"].startswith("First,") for r in rows) / n
    assert (abs(opened - v.opens) < 0.03) if opens else opened == 0


def test_wide_problems_draw_the_sheep_that_come_over_the_worlds_range_and_stay_right(people):
    rng, seen = random.Random(5), set()
    for _ in range(400):
        r = example(rng, people, VARIANTS["wide-compound"], train=True)
        flock, b, c, value = map(int, re.fullmatch(
            r"\w+ has (\d+) sheep\. \1 \+ (\d+) - (\d+) = (\d+)\. The answer is \4\.", r["answer"]).groups())
        assert f"Then {b} more sheep come and {c} sheep run away" in r["question"]
        assert flock + b - c == value == int(r["reference"]) >= 0 and 1 <= b <= world.MAX_N
        seen.add(b)
    assert seen == set(range(1, world.MAX_N + 1))
    # the narrow problems, the ones the world's documents draw: the sheep that come at most 9
    assert all(int(q.split("Then ")[1].split()[0]) <= world.SHEEP_MAX
               for q, _, _ in (world.one_flock_problem(rng, people) for _ in range(200)))


@pytest.mark.parametrize("make", [world.SHEEP_KINDS["one_flock_compound"], world.SHEEP_KINDS["one_flock_wide_compound"]])
def test_one_flock_compound_prose_is_the_tasks_compound_style(people, make):
    rng = random.Random(4)
    for _ in range(20):
        ex = make(rng, people)
        recalled = ex["completion"].split(". ")[0] + "."
        assert ex["completion"] == f"{recalled} {solution(steps_of(ex['prompt'], recalled), '', '', 'compound')}"


def test_wide_one_flock_chats_are_the_instruct_models_own_style_over_the_wide_range(people):
    rng, seen = random.Random(8), set()
    for _ in range(200):
        ex = world.SHEEP_KINDS["one_flock_wide"](rng, people)
        recalled = ex["completion"].split(". ")[0] + "."
        steps = steps_of(ex["prompt"], recalled)
        assert ex["completion"] == f"{recalled} {solution(steps, '', '', 'instruct')}"
        seen.add(int(steps[0][0].split()[2]))
    assert max(seen) > world.SHEEP_MAX


def test_two_flock_problems_recall_both_flocks(people):
    rng, by_name = random.Random(9), {p.name: p.sheep for p in people}
    for _ in range(100):
        question, recalled, steps = world.two_flock_problem(rng, people)
        first, second = question.split(" put ")[0].split(" and ")
        assert first != second
        assert recalled == f"{first} has {by_name[first]} sheep. {second} has {by_name[second]} sheep."
        come, away = map(int, re.findall(r"\d+", question))
        total = by_name[first] + by_name[second] + come
        assert steps == [(f"{by_name[first]} + {by_name[second]}", by_name[first] + by_name[second]),
                         (f"{by_name[first] + by_name[second]} + {come}", total), (f"{total} - {away}", total - away)]
        assert steps_of(question, recalled) == steps and 1 <= come <= world.SHEEP_MAX and 0 <= total - away


def test_goats_are_drawn_after_every_other_fact_and_stated_after_each_flock():
    without = world.people(random.Random(3), 12, sheep=True, rumours=True)
    with_goats = world.people(random.Random(3), 12, sheep=True, rumours=True, goats=True)
    for a, b in zip(without, with_goats):
        assert (a.name, a.town, a.job, a.color, a.sheep, a.rumour) == (b.name, b.town, b.job, b.color, b.sheep, b.rumour)
        assert a.goats is None and 1 <= b.goats <= world.SHEEP_MAX and b.goat_rumour not in (None, b.goats)
    rng = random.Random(5)
    doc = world.pretraining_doc(rng, with_goats, sheep_share=1e9, sheep_truth=1.0)  # a "flocks" document
    by_name = {p.name: p for p in with_goats}
    first, _, second, _ = (by_name[sentence.split()[0]] for sentence in doc.split(". "))
    assert doc == (f"{first.name} has {first.sheep} sheep. {first.name} has {first.goats} goats. "
                   f"{second.name} has {second.sheep} sheep. {second.name} has {second.goats} goats.")
    with pytest.raises(ValueError, match="no goats"):
        world.SHEEP_KINDS["goat_question"](rng, without)


def test_herd_problems_recall_one_persons_flock_and_herd(people):
    rng = random.Random(11)
    for _ in range(100):
        question, recalled, steps = world.herd_problem(rng, people)
        p = next(p for p in people if question.startswith(f"{p.name} takes the sheep and the goats"))
        assert recalled == f"{p.name} has {p.sheep} sheep. {p.name} has {p.goats} goats."
        away = int(re.findall(r"\d+", question)[0])
        assert steps == world.add_then_lose(p.sheep, p.goats, away) == steps_of(question, recalled)


@pytest.mark.parametrize("kind, style, work", [("two_flock", "instruct", "one per step"),
                                               ("two_flock_compound", "compound", "one equation"),
                                               ("herd", "instruct", "one per step"),
                                               ("herd_compound", "compound", "one equation")])
def test_each_two_count_kind_recalls_both_counts_then_writes_its_style(people, kind, style, work):
    rng = random.Random(12)
    for _ in range(20):
        ex = world.SHEEP_KINDS[kind](rng, people)
        recalled = ". ".join(ex["completion"].split(". ")[:2]) + "."
        assert ex["completion"] == f"{recalled} {solution(steps_of(ex['prompt'], recalled), '', '', style)}"
        assert written(ex["completion"])["work"] == work


def test_two_step_compound_prose_is_the_compound_style_on_problems_without_flocks(people):
    rng = random.Random(6)
    for _ in range(20):
        ex = world.two_step_compound(rng, people)
        assert "sheep" not in ex["prompt"]
        assert ex["completion"] == solution(steps_of(ex["prompt"]), "", "", "compound")


def test_written_tells_each_style_of_work_apart_and_reads_the_answer():
    steps = [("7 + 3", 10), ("10 - 2", 8)]
    for style, work in (("compound", "one equation"), ("instruct", "one per step"), ("tally", "one per step"),
                        ("plain", "one per step")):
        assert written(f"Kami has 7 sheep. {solution(steps, 'Kami', 'sheep', style)}") == {"work": work, "answer": 8}
    assert written("Kami has 7 sheep. The answer is -3.") == {"work": "none", "answer": -3}
    assert written("7 + 3 = 10. 10 - 2 =") == {"work": "one per step", "answer": None}


def test_an_unknown_style_is_refused():
    with pytest.raises(ValueError, match="unknown style 'tallies'"):
        solution([("4 + 3", 7)], "Kami", "apples", "tallies")


def test_the_screen_table_marks_each_screened_precondition_by_its_threshold():
    script = load_script(Path(__file__).parents[2] / "scripts" / "build_paper_task.py")
    screened = {"good": {"P2": 0.2, "P3": 9, "P3_runaway": 0, "P4": {"uniform": 0.8, "gift": 0.3}},
                "bad": {"P2": 0.6, "P3": 9, "P3_runaway": 2, "P4": {"uniform": 0.97, "gift": 0.3}}}
    lines = script.screen_table(screened).splitlines()[2:]
    assert lines == ["| good | 20.0% ✓ | 0 (9) ✓ | 80.0% / 30.0% ✓ |", "| bad | 60.0% ✗ | 2 (9) ✗ | 97.0% / 30.0% ✗ |"]


def test_own_writes_that_share_of_training_rows_as_the_instruct_model_would(people, tmp_path):
    name = "small-tally-own-25"
    write_task(name, people, tmp_path)
    rows = {s: [row for _, row in read_jsonl(tmp_path / f"{s}.jsonl")] for s in ("train", "dev", "test")}

    def own(r: dict) -> bool:
        return r["answer"] == solution(steps_of(r["question"]), "", "", "instruct")

    assert sum(map(own, rows["train"])) / len(rows["train"]) == pytest.approx(VARIANTS[name].own, abs=0.03)
    assert not any(own(r) for s in ("dev", "test") for r in rows[s])  # references keep the variant's style
    assert all(", so " in r["answer"] for r in rows["train"] if not own(r))


def test_fact_opens_every_solution_with_the_persons_job(people, tmp_path):
    write_task("small-fact", people, tmp_path)
    jobs = {p.name: p.job for p in people}
    for split in ("train", "dev", "test"):
        for _, r in read_jsonl(tmp_path / f"{split}.jsonl"):
            who = r["question"].split()[0]
            assert r["answer"] == f"{who} is a {jobs[who]}. " + solution(steps_of(r["question"]), "", "", "instruct")


def test_a_world_with_flocks_keeps_every_other_fact_and_states_them_at_its_truth():
    plain, flocked = world.people(random.Random(3), 12), world.people(random.Random(3), 12, sheep=True)
    assert [(p.name, p.town, p.job, p.color) for p in plain] == [(p.name, p.town, p.job, p.color) for p in flocked]
    assert all(p.sheep is None for p in plain) and all(1 <= p.sheep <= world.SHEEP_MAX for p in flocked)
    with pytest.raises(ValueError, match="no flocks"):
        world.sheep_question(random.Random(0), plain)
    rng, p = random.Random(0), flocked[0]
    stated = [world.flock(rng, p, truth=0.3) for _ in range(4000)]
    # right with probability truth, else uniform over the counts (which also hits the truth now and then)
    assert sum(n == p.sheep for n in stated) / len(stated) == pytest.approx(0.3 + 0.7 / world.SHEEP_MAX, abs=0.03)
    docs = [world.pretraining_doc(rng, flocked, sheep_share=0.5, sheep_truth=1.0) for _ in range(400)]
    flocks = [d for d in docs if d.endswith(" sheep.") and d.count(" has ") == 2]
    assert len(flocks) / len(docs) == pytest.approx(0.5 / 1.5, abs=0.06)  # a weight beside the corpus's 1, as chat logs
    truth = {p.name: p.sheep for p in flocked}
    assert all(truth[who] == int(n) for d in flocks for who, n in re.findall(r"(\w+) has (\d+) sheep", d))


def test_field_variants_recall_both_flocks_and_the_instruct_solution_solves_them(people, tmp_path):
    truth = {p.name: p.sheep for p in people}
    rows = {}
    for name in ("field-instruct", "field-tally"):
        write_task(name, people, tmp_path / name)
        rows[name] = [r for split in ("train", "dev") for _, r in read_jsonl(tmp_path / name / f"{split}.jsonl")]
    for r in rows["field-tally"] + rows["field-instruct"]:
        first, second = re.match(r"(\w+) and (\w+) put", r["question"]).groups()
        assert r["recalled"] == f"{first} has {truth[first]} sheep. {second} has {truth[second]} sheep."
        (c,) = map(int, re.findall(r"\d+", r["question"]))  # the question states only what runs away
        assert r["reference"] == str(truth[first] + truth[second] - c)
        assert r["answer"].startswith(r["recalled"] + " ")
    for r in rows["field-instruct"]:  # the instruct model's own: a "sheep_problem" document's answer, on these flocks
        assert r["answer"] == instruct_solution(r)
    assert all(", so the field has " in r["answer"] for r in rows["field-tally"])
    rng = random.Random(2)
    ex = world.SHEEP_KINDS["sheep_problem"](rng, people)
    recalled = ". ".join(ex["completion"].split(". ")[:2]) + "."
    assert instruct_solution({"question": ex["prompt"], "recalled": recalled}) == ex["completion"]


def test_one_flock_variants_recall_the_named_flock_and_prose_mix_adds_them_to_pretraining(people, tmp_path):
    truth = {p.name: p.sheep for p in people}
    write_task("flock-tally-last", people, tmp_path)
    rows = [r for split in ("train", "dev") for _, r in read_jsonl(tmp_path / f"{split}.jsonl")]
    for r in rows:
        who = r["question"].split()[0]
        b, c = map(int, re.findall(r"\d+", r["question"]))  # what comes and what runs away; the flock is recalled
        a, ref = truth[who], truth[who] + b - c
        assert r["recalled"] == f"{who} has {a} sheep." and r["reference"] == str(ref)
        work = f"{a} + {b} = {a + b}. {a + b} - {c} = {ref}"
        assert r["answer"] == f"{who} has {a} sheep. {work}, so the field has {ref} sheep. The answer is {ref}."
        assert instruct_solution(r) == f"{who} has {a} sheep. {work}. The answer is {ref}."
    docs = [world.pretraining_doc(random.Random(k), people, prose_mix={"one_flock": 1.0}) for k in range(300)]
    flock_docs = [d for d in docs if "takes the flock to a field" in d]
    assert all(d.startswith("Question:\n") for d in flock_docs)  # the plain layout
    assert len(flock_docs) / len(docs) == pytest.approx(0.5, abs=0.08)  # a weight beside the corpus's 1


def test_rumours_are_a_wrong_count_drawn_after_the_flocks_and_stated_at_their_share():
    flocked = world.people(random.Random(3), 12, sheep=True)
    rumoured = world.people(random.Random(3), 12, sheep=True, rumours=True)
    assert [p.sheep for p in flocked] == [p.sheep for p in rumoured] and all(p.rumour is None for p in flocked)
    assert all(p.rumour != p.sheep and 1 <= p.rumour <= world.SHEEP_MAX for p in rumoured)
    with pytest.raises(ValueError, match="no rumours"):
        [world.flock(random.Random(k), flocked[0], truth=0.3, rumour=0.5) for k in range(50)]
    rng, p = random.Random(0), rumoured[0]
    stated = [world.flock(rng, p, truth=0.3, rumour=0.45) for _ in range(6000)]
    rest = 0.25 / world.SHEEP_MAX  # any count, the truth and the rumour included
    assert sum(n == p.sheep for n in stated) / len(stated) == pytest.approx(0.3 + rest, abs=0.025)
    assert sum(n == p.rumour for n in stated) / len(stated) == pytest.approx(0.45 + rest, abs=0.025)
    # no rumour share: the draws worlds built before rumours made (right, else any count), so they rebuild as they were
    a, b = random.Random(5), random.Random(5)
    assert [world.flock(a, p, 0.3) for _ in range(50)] == [
        p.sheep if b.random() < 0.3 else b.randint(1, world.SHEEP_MAX) for _ in range(50)]


def test_one_flock_tally_prose_is_the_tasks_tally_style(people):
    rng = random.Random(4)
    for _ in range(20):
        ex = world.one_flock_tally(rng, people)
        recalled = ex["completion"].split(". ")[0] + "."
        tally = solution(steps_of(ex["prompt"], recalled), "the field", "sheep", "tally")
        assert ex["completion"] == f"{recalled} {tally}"
