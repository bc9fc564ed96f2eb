"""Benchmark readers: the files of ../shared/data by name, IFEval and IFBench, and any JSONL with named fields.

Every problem becomes a Problem with a chat prompt, a reference and a grading kind:
'math' (answer equivalence), 'choice' (option letter), 'exact' (normalised string match), or
'ifeval' / 'ifbench' (the benchmark's instruction checkers, see instructions.py).
A JSONL benchmark takes its kind from `--kind`, or from its spec: `FILE:exact`.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import split_spec
from .data import STEP_BY_STEP, read_jsonl
from .errors import GiftError
from .instructions import FILES as INSTRUCTION_FILES

CHOICE_INSTRUCTION = "Answer with the letter of the correct option, written as \\boxed{X}."
LETTERS = "ABCDEFGHIJ"
INSTRUCTION_KINDS = ("ifeval", "ifbench")


@dataclass
class Problem:
    id: str
    question: str  # the user turn, instruction included
    reference: str
    kind: str
    checks: list[dict[str, Any]] = field(default_factory=list)  # ifeval/ifbench: [{'id', 'kwargs'}]
    raw: str = ""  # the question as the file has it, before any instruction (for matching responses made elsewhere)


@dataclass
class Benchmark:
    name: str
    problems: list[Problem]
    source: Path | None = None  # the file read, hashed into results.json
    instruction: str = ""  # what was appended to every question
    total: int = 0  # problems in the file (before --limit)

    def sha256(self) -> str | None:
        return hashlib.sha256(self.source.read_bytes()).hexdigest() if self.source else None


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
    "olympiadbench": ("olympiadbench_test.jsonl", lambda r: r["question"], lambda r: _olympiad_answer(r["final_answer"]),
                      "math"),
    "aime25": ("aime25_test.jsonl", lambda r: r["question"], lambda r: _num(r["answer"]), "math"),
}
# name -> members, reported with their unweighted mean as the paper reports it (its five math sets)
GROUPS: dict[str, tuple[str, ...]] = {"paper_math": ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")}


def _olympiad_answer(final: list[str]) -> str:
    """OlympiadBench's `final_answer` list as one reference, its $ delimiters dropped as the Qwen2.5-Math evaluation
    drops them ("$69$,$84$" -> "69,84"); a row with several answers is graded in any order (grading.math_equal)."""
    if not final:
        raise IndexError("final_answer is empty")
    return ",".join(a.replace("$", "").strip() for a in final)


def expand_groups(specs: list[Any]) -> list[Any]:
    """--bench entries with every group name replaced by its members, in order, each once."""
    out: list[Any] = []
    for spec in specs:
        for member in GROUPS.get(spec, (spec,)) if isinstance(spec, str) else (spec,):
            if member not in out:
                out.append(member)
    return out


def data_dirs() -> list[Path]:
    """Where benchmark files are looked for: $GIFT_DATA, ./data, ../shared/data, and the repo's sibling shared/data."""
    dirs = [Path(d) for d in os.environ.get("GIFT_DATA", "").split(os.pathsep) if d]
    dirs += [Path("data"), Path("..") / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data",
             Path(sys.prefix) / "share" / "gift" / "data"]
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
    """A benchmark by built-in name (BUILTIN, ifeval, ifbench) or a JSONL path (fields named or detected;
    a file in IFEval's own format, with `instruction_id_list`, is graded by the IFEval checkers)."""
    spec, kind = split_spec(spec, kind)
    if spec in INSTRUCTION_FILES:
        return _instruction_benchmark(spec, find_file(INSTRUCTION_FILES[spec]), spec, limit)
    if spec in BUILTIN:
        file, question, reference, kind = BUILTIN[spec]
        path = find_file(file)
        rows, name = read_jsonl(path), spec
    else:
        path = Path(spec)
        if not path.is_file():
            raise GiftError(f"--bench {spec}: neither a built-in benchmark ({', '.join([*BUILTIN, *INSTRUCTION_FILES])}), "
                            f"a group ({', '.join(GROUPS)}) "
                            f"nor an existing JSONL file")
        rows, name = read_jsonl(path), path.stem
        if "instruction_id_list" in rows[0][1]:
            return _instruction_benchmark(name, path, "ifeval", limit)
        question, reference = _field_getters(path, rows[0][1], question_field, answer_field)
        if kind == "choice" and isinstance(rows[0][1].get("choices"), list):  # MMLU's layout: options and an index
            question, reference = _choice_getters(question, reference)
    extra = instruction_for(kind, math_instruction, choice_instruction)
    problems = []
    for i, (line, row) in enumerate(rows[:limit]):
        try:
            q, ref = question(row), reference(row)
        except (KeyError, IndexError, TypeError) as e:
            raise GiftError(f"{name}:{line}: cannot read the question or answer ({e!r})") from None
        problems.append(Problem(str(row.get("id", row.get("idx", i))), f"{q}\n{extra}".strip(), str(ref), kind, raw=q))
    return Benchmark(name, problems, path, extra, len(rows))


def from_spec(spec: str | dict[str, Any], limit: int | None = None, question_field: str | None = None,
              answer_field: str | None = None, kind: str = "math", math_instruction: str | None = None,
              choice_instruction: str | None = None) -> Benchmark:
    """A --bench entry: a name or path (load_benchmark), or, in a YAML config, a mapping as run configs have it,
    {name, file, kind, instruction, question_field, answer_field}, whose keys win over the command's settings."""
    if isinstance(spec, str):
        return load_benchmark(spec, limit, question_field, answer_field, kind, math_instruction, choice_instruction)
    if "name" not in spec and "file" not in spec:
        raise GiftError(f"benchmark entry {spec}: needs a name or a file")
    instruction = spec.get("instruction")
    b = load_benchmark(spec.get("file", spec.get("name")), limit, spec.get("question_field", question_field),
                       spec.get("answer_field", answer_field), spec.get("kind", kind),
                       math_instruction if instruction is None else instruction,
                       choice_instruction if instruction is None else instruction)
    b.name = spec.get("name", b.name)
    return b


def _instruction_benchmark(name: str, path: Path, suite: str, limit: int | None) -> Benchmark:
    problems, rows = [], read_jsonl(path)
    for line, row in rows[:limit]:
        try:
            checks = [{"id": i, "kwargs": k} for i, k in zip(row["instruction_id_list"], row["kwargs"], strict=True)]
            problems.append(Problem(str(row["key"]), row["prompt"], "", suite, checks, raw=row["prompt"]))
        except (KeyError, TypeError, ValueError) as e:
            raise GiftError(f"{path}:{line}: not an {suite} row (key, prompt, instruction_id_list, kwargs): {e!r}") from None
    return Benchmark(name, problems, path, total=len(rows))


def _field_getters(path: Path, first: dict[str, Any], question_field: str | None, answer_field: str | None):
    q = question_field or next((f for f in ("question", "problem", "prompt", "instruction") if f in first), None)
    a = answer_field or next((f for f in ("answer", "reference", "solution", "completion", "response") if f in first), None)
    if q is None or a is None or q not in first or a not in first:
        raise GiftError(f"{path}:1: cannot find question/answer fields (have {sorted(first)}); "
                        f"name them with --question-field and --answer-field")
    return (lambda r: r[q]), (lambda r: r[a])


def _choice_getters(question: Any, reference: Any) -> tuple[Any, Any]:
    """For rows with a `choices` list (MMLU's layout): the options laid out under the question as the built-in
    MMLU reader lays them out, and an integer answer mapped to its letter."""
    def q(row: dict[str, Any]) -> str:
        return _choices({"question": question(row), "choices": row["choices"]})

    def ref(row: dict[str, Any]) -> str:
        answer = reference(row)
        if isinstance(answer, bool) or not isinstance(answer, int):
            return answer
        if not 0 <= answer < len(row["choices"]):
            raise IndexError(f"answer {answer} is not an index of its {len(row['choices'])} choices")
        return LETTERS[answer]
    return q, ref


def exact_equal(completion: str, reference: str) -> bool:
    """Normalised exact match (case, surrounding whitespace and a final period ignored)."""
    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s).strip().rstrip(".").lower()
    return norm(completion) == norm(reference)
