"""scripts/probe_facts.py reads each fact's truth where the answer states it, the same in a padded batch as alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gift.config import ASSETS
from gift.model import load_model, load_tokenizer
from gift.tiny import world
from tests.conftest import load_script

script = load_script(Path(__file__).parents[2] / "scripts" / "probe_facts.py")


@pytest.mark.parametrize("layout", ["chat", "plain"])
def test_the_truths_probability_is_read_at_the_value_and_padding_does_not_move_it(layout):
    pair = ASSETS / "tiny2"
    people = [world.Person(**p) for p in json.loads((pair / "world.json").read_text())][:2]
    people[0].sheep = 4  # a flock row too (this world has none), answered "… has 4 sheep."
    rows = script.facts(people)
    assert [f for f, _, _ in rows] == ["town", "job", "color"] * 2 + ["flock"]
    batched = script.truth_probabilities(pair / "instruct", rows, layout)
    tok, model = load_tokenizer(str(pair / "instruct")), load_model(str(pair / "instruct")).eval()
    for (_, ex, value), p in zip(rows, batched):
        # alone, unpadded: the prefix up to the value in the same layout, and the value's first token after it
        text = world.plain(ex) if layout == "plain" else tok.apply_chat_template(
            [{"role": "user", "content": ex["prompt"]}, {"role": "assistant", "content": ex["completion"]}],
            tokenize=False)
        prefix = text[:text.rindex(" " + value)]
        ids = tok(prefix, add_special_tokens=False)["input_ids"]
        first = tok(" " + value, add_special_tokens=False)["input_ids"][0]
        with torch.inference_mode():
            alone = model(input_ids=torch.tensor([ids])).logits[0, -1].float().softmax(-1)[first].item()
        assert p == pytest.approx(alone, abs=1e-4), (ex, value)
