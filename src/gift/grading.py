"""Answer extraction and equivalence for math and multiple choice.

Extraction, in order: the last \\boxed{...}, GSM8K's `#### N`, the last "the answer is ...", and for
numeric references the last number in the text. Equivalence: normalised strings, then numbers, then
math-verify (sympy) with a time limit per comparison, so that one pathological expression cannot hang
a run (math-verify's limits are signal-based and so only enforced on the main thread; elsewhere a
length cap keeps sympy away from huge inputs).
"""
from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

logging.getLogger("math_verify").setLevel(logging.ERROR)  # its time-out notices would interleave with output

BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)
# GSM8K's mark is `#### N`, the answer alone on its line (lm-eval's strict filter: `#### (\-?[0-9\.\,]+)`); a Markdown
# heading such as `#### Step 1: add the numbers` or `#### 2. Totals` is not an answer
GSM8K_MARK = re.compile(r"^[ \t]*####[ \t]*\$?(-?[\d,]*\.?\d+(?:/\d+)?)[ \t]*\.?[ \t]*$", re.MULTILINE)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
MAX_SYMPY_CHARS = 400  # longer answers are compared as strings only


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (braces balanced), or None."""
    starts = [m.end() for m in BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start:i - 1].strip()
    return None


def extract_answer(text: str, numeric_fallback: bool = False) -> str | None:
    """The final answer a completion states, or None when it states none."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    marked = GSM8K_MARK.findall(text)
    if marked:
        return marked[-1].strip()
    said = ANSWER_IS.findall(text)
    if said:
        return said[-1].strip().splitlines()[0].strip().rstrip(".").strip("$ *").rstrip(".").strip()
    if numeric_fallback:
        numbers = NUMBER.findall(text)
        return numbers[-1] if numbers else None
    return None


def normalise(answer: str) -> str:
    """A canonical string for exact comparison and majority voting."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", r"\1", s)
    s = re.sub(r"\\(?:mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "").replace("^\\circ", "")
    s = s.replace("^{\\circ}", "").replace("\\%", "").replace("%", "").replace("\\$", "")
    s = re.sub(r"\s+", "", s).rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):  # thousands separators, only in a lone number
        s = s.replace(",", "")
    if re.fullmatch(r"[A-Za-z]{2,}", s):  # a word answer ("Evelyn", "odd"): case does not matter; x and X do
        s = s.lower()
    s = re.sub(r"^\((-?[\d.]+)\)$", r"\1", s)  # "(073)" as in AIME's \textbf{(073)}
    if re.fullmatch(r"-?\d+\.\d*", s):
        s = s.rstrip("0").rstrip(".") or "0"
    return s


def _as_number(s: str) -> float | None:
    m = re.fullmatch(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?", s)
    if m:
        return float(s)
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", s)
    if m and int(m.group(3)):
        return (-1 if m.group(1) else 1) * int(m.group(2)) / int(m.group(3))
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    if m and int(m.group(2)):
        return int(m.group(1)) / int(m.group(2))
    return None


@lru_cache(maxsize=65536)
def _sympy_equal(reference: str, prediction: str) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    on_main = threading.current_thread() is threading.main_thread()
    limit = 5 if on_main else None
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    try:
        gold = parse(f"${reference}$", configs, parsing_timeout=limit)
        pred = parse(f"${prediction}$", configs, parsing_timeout=limit)
        return bool(gold and pred and verify(gold, pred, timeout_seconds=limit))
    except Exception:  # a grader that raises on odd model output would end the run: unparseable is wrong
        return False


def math_equal(prediction: str, reference: str) -> bool:
    """Whether two final answers are the same mathematical object."""
    p, r = normalise(prediction), normalise(reference)
    if p == r:
        return True
    pn, rn = _as_number(p), _as_number(r)
    if pn is not None and rn is not None:
        return abs(pn - rn) <= 1e-6 * max(1.0, abs(rn))
    if len(prediction) > MAX_SYMPY_CHARS or len(reference) > MAX_SYMPY_CHARS:
        return False
    if p.lower() == r.lower():  # only the case differs: x and X are different variables (math-verify folds case)
        return False
    return _sympy_equal(reference, prediction) or _same_answers(prediction, reference)


def top_level_parts(answer: str) -> list[str]:
    """An answer cut at its commas outside brackets: "(1,2), (3,4)" -> ["(1,2)", "(3,4)"]; "\\{1,2\\}" stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(answer):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(answer[start:i].strip())
            start = i + 1
    return [*parts, answer[start:].strip()]


def _same_answers(prediction: str, reference: str) -> bool:
    """Several answers (OlympiadBench's multi-answer rows: "(6,3),(9,3)", "69, 84") are the same in any order: each
    reference part matched by its own prediction part. math-verify compares bare lists as sets, but not a list of
    tuples, and gives up on long ones; a pair of numbers "(5,100)" is one part and stays ordered."""
    ps, rs = top_level_parts(prediction), top_level_parts(reference)
    if len(ps) != len(rs) or len(rs) < 2:
        return False
    left = list(ps)
    for r in rs:
        match = next((i for i, q in enumerate(left) if math_equal(q, r)), None)
        if match is None:
            return False
        left.pop(match)
    return True


def _letter_patterns(letters: str) -> tuple[list[re.Pattern], re.Pattern, re.Pattern]:
    """(explicit statements, option-shaped line openings, parenthesised letters) for the option letters in use."""
    x = f"[{letters}]"
    explicit = [
        re.compile(rf"\\boxed\{{\s*(?:\\text\{{)?\s*\(?({x})\)?\s*\}}?\s*\}}"),  # \boxed{A}, \boxed{(A)}, \boxed{\text{A}}
        # "Answer: A", "The correct answer is (B)", "the answer is: **C**", "Correct option: D." (the letter stands
        # alone); a bare "option X" is no statement: explanations name the options they reject ("Option A is wrong")
        re.compile(rf"(?i:answer|(?:correct|best|right) (?:option|choice))\s*(?i:is|:|=)?\s*:?\s*\**\s*\(?({x})\)?"
                   rf"(?![A-Za-z0-9])"),
        re.compile(rf"(?i:pick|choose|select|go with)\s+(?i:option |choice )?\(?({x})\)?(?![A-Za-z0-9])"),  # "I'd pick B"
    ]
    # a line that opens with an option: "A. amnion", "B) 12", "C: …", "(D) …", "**B**", "**B.** …", or a lone "A"
    line = re.compile(rf"^[ \t>*-]*(?:\*\*\(?({x})\)?[.):]?\*\*|\(({x})\)|({x})[.):](?=\s|$)|({x})[ \t]*$)", re.MULTILINE)
    return explicit, line, re.compile(rf"\(({x})\)")


def _norm_text(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def options_of(question: str) -> list[str]:
    """The option texts of a question laid out as 'A. …' lines (as gift lays out MMLU), in letter order."""
    found = dict(re.findall(r"^([A-J])\. (.*)$", question, re.MULTILINE))
    out = []
    for letter in "ABCDEFGHIJ":
        if letter not in found:
            break
        out.append(found[letter])
    return out


def extract_choice(text: str, options: list[str] | None = None) -> str | None:
    """The option letter a completion picks, or None when it picks none.

    In order: an explicit statement (the last \\boxed{X}, else the last "answer is (X)", "Answer: X", "correct option:
    X", else the last "I'd pick X"); else the letters of lines
    that open with an option ("A. amnion", "B) 12", "**B**", a lone "A") and of "(X)" anywhere, when they name one
    letter; else, given the options, the one option whose text the completion repeats.
    Several letters listed without a choice give None, never a guess. With `options`, only their letters count
    (an "E. coli" line is no option of a four-option question)."""
    letters = "ABCDEFGHIJ"[: len(options)] if options else "ABCDEFGHIJ"
    explicit, line, paren = _letter_patterns(letters)
    for pattern in explicit:
        found = pattern.findall(text)
        if found:
            return found[-1]
    named = {g for m in line.findall(text) for g in m if g} | set(paren.findall(text))
    if len(named) == 1:
        letter = named.pop()
        texts = {_norm_text(o): letters[i] for i, o in enumerate(options or [])}
        opened = re.findall(rf"^[ \t>*-]*\(?{letter}\)?[.):]\s+(.+)$", text, re.MULTILINE)
        # "A: chorion" where chorion is B's text: the letter and its text disagree, so neither is read
        return None if any(texts.get(_norm_text(rest), letter) != letter for rest in opened) else letter
    if named:
        return None
    if options:
        said = f" {_norm_text(text)} "
        hits = [i for i, o in enumerate(options) if _norm_text(o) and f" {_norm_text(o)} " in said]
        hits = [i for i in hits if not any(i != j and _norm_text(options[i]) in _norm_text(options[j]) for j in hits)]
        if len(hits) == 1 and (len(_norm_text(options[hits[0]])) >= 6 or _norm_text(text) == _norm_text(options[hits[0]])):
            return letters[hits[0]]
    return None


def reference_answer(reference: str) -> str:
    """A reference may be a bare answer or a worked solution ending in \\boxed{} or `#### N`."""
    return extract_answer(reference) or reference.strip()


def grade_answer(completion: str, reference: str, kind: str = "math", options: list[str] | None = None) -> bool:
    """True when `completion` states the `reference` answer. kind: 'math' or 'choice' (a letter; `options`, the
    option texts, let a completion that repeats one option's text be read)."""
    if kind == "choice":
        ref = extract_choice(reference) or reference.strip().upper()
        return extract_choice(completion, options) == ref
    if kind != "math":
        raise ValueError(f"kind must be 'math' or 'choice', got {kind!r}")
    return grade_math(completion, reference)[1]


def grade_math(completion: str, reference: str) -> tuple[str | None, bool]:
    """(the answer the completion states, whether it equals the reference's); the last-number fallback
    applies only when the reference is a number."""
    ref = reference_answer(reference)
    pred = extract_answer(completion, numeric_fallback=_as_number(normalise(ref)) is not None)
    return pred, pred is not None and math_equal(pred, ref)
