"""scripts/probe_style.py reads each model's greedy answers through its chat template, batched as they would be
alone."""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from gift.config import ASSETS
from gift.data import TemplateOptions, render
from gift.model import load_model, load_tokenizer
from gift.tiny import world
from gift.tiny.regime import steps_of, written
from tests.conftest import load_script

script = load_script(Path(__file__).parents[2] / "scripts" / "probe_style.py")


def test_each_models_answers_are_its_greedy_answers_alone_and_their_shares_add_up():
    pair = ASSETS / "tiny2"
    people = [world.Person(**{**p, "sheep": 3 + i % 5}) for i, p in
              enumerate(json.loads((pair / "world.json").read_text()))]
    rng = random.Random(0)
    rows = [world.one_flock_problem(rng, people)[:2] for _ in range(6)]
    report = script.styles(pair, rows, batch_size=4)  # a padded batch beside a shorter last one
    for name in ("base", "instruct"):
        tok, model = load_tokenizer(str(pair / name)), load_model(str(pair / name)).eval()
        answers = []
        for question, _ in rows:
            ids = tok(render(tok, [{"role": "user", "content": question}], TemplateOptions(),
                             add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                out = model.generate(ids, max_new_tokens=64, do_sample=False, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id)
            answers.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
        assert report[name]["example"] == answers[0]
        seen = [written(a) for a in answers]
        assert report[name]["right"] == sum(s["answer"] == steps_of(q, r)[-1][1] for s, (q, r) in zip(seen, rows)) / 6
        assert sum(report[name][w] for w in ("one equation", "one per step", "none")) == 1.0
        assert report[name]["one per step"] == sum(s["work"] == "one per step" for s in seen) / 6
        # who each answer's recall names, against the question's one person (the name opening its flock sentence)
        assert report[name]["names copied"] == sum(a.split(" ", 1)[0] == q.split(" ", 1)[0]
                                                   for a, (q, _) in zip(answers, rows)) / 6


def test_names_reads_who_each_sentence_opens_with():
    recalled = "Nini has 5 sheep. Marba has 4 sheep."
    assert script.names(recalled) == ["Nini", "Marba"]
    assert script.names("Nini has 5 sheep. Mimi has 7 sheep. 5 + 7 = 12.", 2) == ["Nini", "Mimi"]
