"""The GIFT paper's public annotation format, read into gift's layout and written from it.

The paper's code (github zwRuan/gift, src/python_scripts/confidence_anno.py) writes one JSON row per example,
`{"instruction", "response", "scores": [[p, p], …]}`: p = p_instruct(y_t | x, y_<t) for each response token, the
prompt and response tokenized together, the end-of-turn token neither appended nor scored (its training scripts give
it weight 1, as gift's GIFT weights do). Aligning those scores with gift's tokens is the one thing done by hand here:
the response tokens of a gift encoding are its labelled positions before the end-of-turn token, and the two counts
must agree exactly or the row is refused (another tokenizer, another template, or a row cut by the script's --max-len).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import IGNORE, Encoded, read_jsonl
from .errors import GiftError

EOT_CONFIDENCE = 1.0  # the format scores no end-of-turn token; gift's GIFT weight there is 1 whatever q is


def read_scores(path: str | Path) -> dict[int, list[float]]:
    """line -> the scores of that line (the first of each [p, p] pair; a bare p is read too), checked in [0, 1]."""
    out = {}
    for line, row in read_jsonl(path):
        scores = row.get("scores")
        if not isinstance(scores, list) or not scores:
            raise GiftError(f"{path}:{line}: no 'scores' list; not an annotation in the paper's format "
                            f"(instruction, response, scores)")
        try:
            values = [float(s[0] if isinstance(s, (list, tuple)) else s) for s in scores]
        except (TypeError, ValueError, IndexError):
            raise GiftError(f"{path}:{line}: 'scores' must be numbers or [p, p] pairs") from None
        if not all(0.0 <= v <= 1.0 for v in values):
            raise GiftError(f"{path}:{line}: a score outside [0, 1]; the format holds probabilities")
        out[line] = values
    return out


def response_positions(row: Encoded, eot_ids: set[int]) -> tuple[list[int], int | None]:
    """(the positions of a row's response tokens, the position of its closing end-of-turn token or None when cut)."""
    labelled = [i for i, y in enumerate(row.labels) if y != IGNORE]
    if labelled and row.input_ids[labelled[-1]] in eot_ids:
        return labelled[:-1], labelled[-1]
    return labelled, None


def scores_to_confidence(rows: list[Encoded], scores: dict[int, list[float]], eot_ids: set[int],
                         source: str) -> list[list[float]]:
    """gift's `confidence` column (q at labelled positions, 0 elsewhere) from the paper's scores; the end-of-turn
    token gets EOT_CONFIDENCE. A row whose response tokens and scores differ in number is refused in one line."""
    out = []
    for row in rows:
        tokens, eot = response_positions(row, eot_ids)
        given = scores[row.line]
        if len(given) != len(tokens) and not (eot is None and len(given) > len(tokens)):  # gift cut the row itself
            raise GiftError(f"{source}:{row.line}: {len(given)} scores for {len(tokens)} response tokens; the scores "
                            f"were made with another tokenizer or template, or cut by the script's --max-len")
        conf = [0.0] * len(row.input_ids)
        for i, q in zip(tokens, given):
            conf[i] = q
        if eot is not None:
            conf[eot] = EOT_CONFIDENCE
        out.append(conf)
    return out


def confidence_to_scores(row: Encoded, confidence: list[float], eot_ids: set[int]) -> list[list[float]]:
    """The paper's `scores` of one gift row: [q, q] for each response token, the end-of-turn token left out."""
    tokens, _ = response_positions(row, eot_ids)
    return [[confidence[i], confidence[i]] for i in tokens]


def official_row(prompt: list[dict[str, Any]], response: str, scores: list[list[float]], where: str) -> dict[str, Any]:
    """One row of the paper's format; it holds a single user turn, so a row with more is refused."""
    if len(prompt) != 1 or prompt[0]["role"] != "user":
        raise GiftError(f"{where}: the paper's format holds one user turn and its response; this row has "
                        f"{len(prompt)} turns before the response")
    return {"instruction": prompt[0]["content"], "response": response, "scores": scores}
