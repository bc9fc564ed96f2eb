"""ifeval-lite: verifiable instruction-following probes written for gift, in the spirit of IFEval.

Each probe is a short writing task with one or two instructions, each checked by a function of the
completion alone. Reported as prompt-level accuracy (every instruction followed) and
instruction-level accuracy (share of instructions followed).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

TOPICS = ["the water cycle", "why people keep dogs", "how to make a cup of tea", "the moon", "learning a new language",
          "a rainy afternoon", "how bicycles work", "the importance of sleep", "a visit to a market",
          "why the sky is blue", "planting a tree", "the history of bread"]


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _strip_fence(text: str) -> str:
    return re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())


def _is_json(text: str) -> bool:
    try:
        json.loads(_strip_fence(text))
        return True
    except json.JSONDecodeError:
        return False


def _bullets(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(r"^\s*[*-]\s+\S", line))


# kind -> (instruction text, check); both take the same keyword parameters
CHECKS: dict[str, tuple[Callable[..., str], Callable[..., bool]]] = {
    "max_words": (lambda n: f"Answer in at most {n} words.", lambda t, n: 0 < len(_words(t)) <= n),
    "min_words": (lambda n: f"Answer in at least {n} words.", lambda t, n: len(_words(t)) >= n),
    "keywords": (lambda words: "Include the words " + " and ".join(f"'{w}'" for w in words) + ".",
                 lambda t, words: all(re.search(rf"\b{re.escape(w)}\b", t, re.IGNORECASE) for w in words)),
    "forbidden": (lambda word: f"Do not use the word '{word}'.",
                  lambda t, word: t.strip() != "" and not re.search(rf"\b{re.escape(word)}\b", t, re.IGNORECASE)),
    "json": (lambda: "Wrap your entire answer in valid JSON.", lambda t: _is_json(t)),
    "all_caps": (lambda: "Write your entire answer in capital letters.",
                 lambda t: any(c.isalpha() for c in t) and t == t.upper()),
    "all_lower": (lambda: "Write your entire answer in lowercase letters only.",
                  lambda t: any(c.isalpha() for c in t) and t == t.lower()),
    "bullets": (lambda n: f"Answer with exactly {n} bullet points, each starting with '* '.", lambda t, n: _bullets(t) == n),
    "no_commas": (lambda: "Do not use any commas.", lambda t: t.strip() != "" and "," not in t),
    "end_phrase": (lambda phrase: f"End your answer with the exact phrase '{phrase}'.",
                   lambda t, phrase: t.strip().endswith(phrase)),
    "start_word": (lambda word: f"Start your answer with the word '{word}'.",
                   lambda t, word: bool(re.match(rf"\W*{re.escape(word)}\b", t.strip(), re.IGNORECASE))),
    "paragraphs": (lambda n: f"Write exactly {n} paragraphs separated by the line ***.",
                   lambda t, n: len([p for p in re.split(r"\n\s*\*\*\*\s*\n", t.strip()) if p.strip()]) == n),
    "quoted": (lambda: "Wrap your entire answer in double quotation marks.",
               lambda t: len(t.strip()) > 1 and t.strip()[0] == '"' and t.strip()[-1] == '"'),
    "title": (lambda: "Include a title wrapped in double angular brackets, such as <<my title>>.",
              lambda t: bool(re.search(r"<<[^<>\n]+>>", t))),
}

PARAMS: dict[str, list[dict[str, Any]]] = {
    "max_words": [{"n": 20}, {"n": 40}, {"n": 60}], "min_words": [{"n": 50}, {"n": 80}, {"n": 120}],
    "keywords": [{"words": ["river", "light"]}, {"words": ["morning"]}, {"words": ["simple", "careful"]}],
    "forbidden": [{"word": "the"}, {"word": "very"}, {"word": "and"}], "json": [{}], "all_caps": [{}], "all_lower": [{}],
    "bullets": [{"n": 3}, {"n": 4}, {"n": 2}], "no_commas": [{}],
    "end_phrase": [{"phrase": "Is there anything else I can help with?"}, {"phrase": "That is all."}],
    "start_word": [{"word": "Today"}, {"word": "Indeed"}], "paragraphs": [{"n": 2}, {"n": 3}], "quoted": [{}], "title": [{}],
}
PAIRS = [("all_lower", "no_commas"), ("title", "max_words"), ("bullets", "keywords"), ("all_caps", "end_phrase"),
         ("quoted", "forbidden"), ("start_word", "min_words")]


def instruction(check: dict[str, Any]) -> str:
    return CHECKS[check["kind"]][0](**check["args"])


def followed(text: str, check: dict[str, Any]) -> bool:
    return bool(CHECKS[check["kind"]][1](text, **check["args"]))


def probes() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The fixed probe set as (id, prompt, checks): every check kind on every other topic, then pairs of
    checks (108 prompts)."""
    out = []
    kinds = list(CHECKS)
    for i, kind in enumerate(kinds):
        for j, topic in enumerate(TOPICS[i % 2::2]):
            args = PARAMS[kind][j % len(PARAMS[kind])]
            out.append(([{"kind": kind, "args": args}], topic))
    for i, (a, b) in enumerate(PAIRS):
        for j, topic in enumerate(TOPICS[i % 3::3]):
            out.append(([{"kind": a, "args": PARAMS[a][j % len(PARAMS[a])]},
                         {"kind": b, "args": PARAMS[b][(j + 1) % len(PARAMS[b])]}], topic))
    return [(f"ifeval-{n}", f"Write about {topic}. " + " ".join(instruction(c) for c in checks), checks)
            for n, (checks, topic) in enumerate(out)]
