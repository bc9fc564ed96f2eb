"""Benchmark readers: the files of ../shared/data by name, any JSONL with named fields, and ifeval-lite.

Every problem becomes a Problem with a chat prompt, a reference and a grading kind:
'math' (answer equivalence), 'choice' (option letter), 'exact' (normalised string match) or
'ifeval' (programmatic instruction checks).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import STEP_BY_STEP, read_jsonl
from .errors import GiftError
from .ifeval_lite import probes

CHOICE_INSTRUCTION = "Answer with the letter of the correct option, written as \\boxed{X}."
LETTERS = "ABCDEFGHIJ"


@dataclass
class Problem:
    id: str
    question: str  # the user turn, instruction included
    reference: str
    kind: str
    checks: list[dict[str, Any]] = field(default_factory=list)  # ifeval only


@dataclass
class Benchmark:
    name: str
    problems: list[Problem]


def _num(x: Any) -> str:
    """27.0 -> '27' for references stored as floats."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _choices(row: dict[str, Any]) -> str:
    opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"]))
    return f"{row['question']}\n\n{opts}"


# name -> (file, question, reference, kind); question/reference are functions of the row
BUILTIN: dict[str, tuple[str, Any, Any, str]] = {
    "gsm8k": ("gsm8k_test.jsonl", lambda r: r["question"], lambda r: r["answer"].rsplit("####", 1)[1].strip(), "math"),
    "math500": ("math500_test.jsonl", lambda r: r["problem"], lambda r: r["answer"], "math"),
    "minerva_math": ("minerva_math_test.jsonl", lambda r: r["problem"], lambda r: r["solution"], "math"),
    "aime24": ("aime24_test.jsonl", lambda r: r["problem"], lambda r: _num(r["answer"]), "math"),
    "amc23": ("amc23_test.jsonl", lambda r: r.get("problem") or r["question"], lambda r: _num(r["answer"]), "math"),
    "svamp": ("svamp_test.jsonl", lambda r: f"{r['Body'].rstrip('.')}. {r['Question']}", lambda r: _num(r["Answer"]),
              "math"),
    "mmlu_stem": ("mmlu_stem_test.jsonl", _choices, lambda r: LETTERS[r["answer"]], "choice"),
}


def data_dirs() -> list[Path]:
    """Where benchmark files are looked for: $GIFT_DATA, ./data, ../shared/data, and the repo's sibling shared/data."""
    dirs = [Path(d) for d in os.environ.get("GIFT_DATA", "").split(os.pathsep) if d]
    dirs += [Path("data"), Path("..") / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    return dirs


def find_file(name: str) -> Path:
    for d in data_dirs():
        if (d / name).is_file():
            return d / name
    looked = ", ".join(str(d) for d in data_dirs())
    raise GiftError(f"benchmark file {name} not found (looked in {looked}); set GIFT_DATA to its folder")


def instruction_for(kind: str, math_instruction: str | None, choice_instruction: str | None) -> str:
    if kind == "math":
        return STEP_BY_STEP if math_instruction is None else math_instruction
    if kind == "choice":
        return CHOICE_INSTRUCTION if choice_instruction is None else choice_instruction
    return ""


def load_benchmark(spec: str, limit: int | None = None, question_field: str | None = None,
                   answer_field: str | None = None, kind: str = "math", math_instruction: str | None = None,
                   choice_instruction: str | None = None) -> Benchmark:
    """A benchmark by built-in name, 'ifeval-lite', or a JSONL path (fields named or detected)."""
    if spec == "ifeval-lite":
        return Benchmark(spec, [Problem(i, q, "", "ifeval", checks) for i, q, checks in probes()[:limit]])
    if spec in BUILTIN:
        file, question, reference, kind = BUILTIN[spec]
        rows, name = read_jsonl(find_file(file)), spec
    else:
        path = Path(spec)
        if not path.is_file():
            raise GiftError(f"--bench {spec}: neither a built-in benchmark ({', '.join([*BUILTIN, 'ifeval-lite'])}) "
                            f"nor an existing JSONL file")
        rows, name = read_jsonl(path), path.stem
        question, reference = _field_getters(path, rows[0][1], question_field, answer_field)
    extra = instruction_for(kind, math_instruction, choice_instruction)
    problems = []
    for i, (line, row) in enumerate(rows[:limit]):
        try:
            q, ref = question(row), reference(row)
        except (KeyError, IndexError, TypeError) as e:
            raise GiftError(f"{name}:{line}: cannot read the question or answer ({e!r})") from None
        problems.append(Problem(str(row.get("id", row.get("idx", i))), f"{q}\n{extra}".strip(), str(ref), kind))
    return Benchmark(name, problems)


def _field_getters(path: Path, first: dict[str, Any], question_field: str | None, answer_field: str | None):
    q = question_field or next((f for f in ("question", "problem", "prompt", "instruction") if f in first), None)
    a = answer_field or next((f for f in ("answer", "reference", "solution", "completion", "response") if f in first), None)
    if q is None or a is None or q not in first or a not in first:
        raise GiftError(f"{path}:1: cannot find question/answer fields (have {sorted(first)}); "
                        f"name them with --question-field and --answer-field")
    return (lambda r: r[q]), (lambda r: r[a])


def exact_equal(completion: str, reference: str) -> bool:
    """Normalised exact match (case, surrounding whitespace and a final period ignored)."""
    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip().rstrip(".").lower()
    return norm(completion) == norm(reference)
