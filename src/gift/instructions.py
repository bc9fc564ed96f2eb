"""IFEval and IFBench: the instruction checkers of the published benchmarks, and lm-eval's four metrics.

The checkers are the official ones (Google's IFEval, AllenAI's IFBench) as the `if-verifiable` package ships
them. The scoring loop around them is written here, as in the official evaluation_lib and lm-evaluation-harness's
`ifeval/utils.py`, because if-verifiable's own loop differs from both: it drops every instruction of an empty
response (lm-eval counts them as not followed) and strips `<think>` blocks. Strict checks the response as it is;
loose also tries it without its first and/or last line and without `*` (the official eight variants).

Deterministic where the official code is not:
- `keywords:letter_frequency` with a non-letter (IFEval keys 1122 '#' and 1129 '!'): the official checker
  counts a random letter instead; gift counts the character the prompt asks for.
- `language:response_language`: langdetect is seeded (DetectorFactory.seed = 0), as its documentation advises.
- IFBench's `words:start_verb` needs nltk's POS tagger, which no PyPI wheel gift can pin ships: those
  instructions are left unscored (counted in the results), never guessed.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import GiftError

SUITES = {"ifeval": "if_verifiable.ifeval.instructions_registry", "ifbench": "if_verifiable.ifbench.instructions_registry"}
FILES = {"ifeval": "ifeval_input_data.jsonl", "ifbench": "IFBench_test.jsonl"}
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
NEEDS_TAGGER = {"words:start_verb"}


@contextlib.contextmanager
def _no_downloads() -> Iterator[None]:
    """if-verifiable's IFBench module calls nltk.download at import for anything missing; gift never downloads."""
    import nltk

    real = nltk.download
    nltk.download = lambda *a, **k: False
    try:
        yield
    finally:
        nltk.download = real


@functools.cache
def registry(suite: str) -> dict[str, Any]:
    """instruction id -> checker class of a suite (looked up once: follow runs per response)."""
    from .resources import require_nltk_data

    require_nltk_data()
    try:
        import langdetect

        langdetect.DetectorFactory.seed = 0
        with _no_downloads():
            return importlib.import_module(SUITES[suite]).INSTRUCTION_DICT
    except ImportError as e:
        raise GiftError(f"{suite} needs the if-verifiable package ({e}); pip install if-verifiable") from None


@functools.cache
def _tagger_installed() -> bool:
    import nltk

    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
        return True
    except LookupError:
        return False


def loose_variants(response: str) -> list[str]:
    from if_verifiable.common import get_loose_transformations

    return get_loose_transformations(response)


def follow(suite: str, prompt: str, checks: list[dict[str, Any]], response: str) -> list[dict[str, Any]]:
    """One verdict per instruction: {'id', 'strict', 'loose'}; both None where gift cannot score it."""
    reg, variants, out = registry(suite), loose_variants(response), []
    for check in checks:
        iid = check["id"]
        if iid not in reg:
            raise GiftError(f"unknown {suite} instruction id {iid!r}")
        if iid in NEEDS_TAGGER and not _tagger_installed():
            out.append({"id": iid, "strict": None, "loose": None})
            continue
        checker = reg[iid](iid)
        kwargs = {k: v for k, v in (check.get("kwargs") or {}).items() if v is not None}
        checker.build_description(**kwargs)
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
        letter = kwargs.get("letter")
        if iid == "keywords:letter_frequency" and isinstance(letter, str) and len(letter) == 1 and not letter.isalpha():
            checker._letter = letter  # the official checker would count a random letter (module docstring)
        strict = bool(response.strip() and checker.check_following(response))
        loose = any(v.strip() and checker.check_following(v) for v in variants)
        out.append({"id": iid, "strict": strict, "loose": bool(loose)})
    return out


def aggregate(verdicts: list[list[dict[str, Any]]]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], int]:
    """Per-item scores of lm-eval's four metrics (prompt level: one per prompt; instruction level: one per
    instruction), accuracy per instruction id, and the number of unscored instructions."""
    scored = [[v for v in vs if v["strict"] is not None] for vs in verdicts]
    prompts = [vs for vs in scored if vs]
    flat = [v for vs in prompts for v in vs]
    scores = {}
    for mode in ("strict", "loose"):
        scores[f"prompt_level_{mode}_acc"] = np.array([all(v[mode] for v in vs) for vs in prompts], float)
        scores[f"inst_level_{mode}_acc"] = np.array([v[mode] for v in flat], float)
    per_id: dict[str, dict[str, float]] = {}
    for iid in sorted({v["id"] for v in flat}):
        mine = [v for v in flat if v["id"] == iid]
        per_id[iid] = {"strict": float(np.mean([v["strict"] for v in mine])),
                       "loose": float(np.mean([v["loose"] for v in mine])), "n": len(mine)}
    unscored = sum(len(vs) for vs in verdicts) - len(flat)
    return scores, per_id, unscored
