"""IFEval's 25 instructions: a response that follows and one that breaks each, through gift's scoring loop."""
from __future__ import annotations

import json

import pytest

from gift.instructions import aggregate, follow
from tests.conftest import SHARED_DATA

SIX_PARAGRAPHS = "\n\n".join(f"Paragraph {i} is short." for i in range(6))
LONG = " ".join(["word"] * 320)

# id -> (kwargs, prompt, a response that follows, a response that breaks)
CASES = {
    "change_case:capital_word_frequency": ({"capital_relation": "less than", "capital_frequency": 3}, "",
                                           "One WORD in caps.", "MANY WORDS ARE SHOUTED HERE."),
    "change_case:english_capital": ({}, "", "THIS IS ALL IN CAPITAL LETTERS.", "This is not."),
    "change_case:english_lowercase": ({}, "", "this is all in lowercase letters.", "This is not."),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Say hello to the team."}, "Say hello to the team. Then greet.",
                                  "Say hello to the team. Hello, team!", "Hello, team!"),
    "combination:two_responses": ({}, "", "The first answer.\n******\nThe second answer.", "Only one answer."),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "", "Dear [name], meet me at [place].",
                                               "Dear friend, meet me there."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "", "Main text.\n\nP.S. See you soon.",
                                      "Main text only."),
    "detectable_format:constrained_response": ({}, "", "My answer is yes.", "Perhaps, who knows."),
    "detectable_format:json_format": ({}, "", '{"name": "gift", "ok": true}', "name: gift"),
    "detectable_format:multiple_sections": ({"section_spliter": "SECTION", "num_sections": 2}, "",
                                            "SECTION 1\nIntro.\nSECTION 2\nBody.", "Just one block of text."),
    "detectable_format:number_bullet_lists": ({"num_bullets": 3}, "", "* one\n* two\n* three", "* one\n* two"),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "", "*first* and *second* parts.",
                                                      "no highlights at all"),
    "detectable_format:title": ({}, "", "<<A Poem>>\nRoses are red.", "A poem without a title."),
    "keywords:existence": ({"keywords": ["river", "stone"]}, "", "A stone sat by the river.", "A cat sat there."),
    "keywords:forbidden_words": ({"forbidden_words": ["rock"]}, "", "Music is great.", "Rock music is great."),
    "keywords:frequency": ({"relation": "at least", "keyword": "story", "frequency": 2}, "",
                           "A story within a story.", "A single story."),
    "keywords:letter_frequency": ({"let_relation": "at least", "letter": "z", "let_frequency": 3}, "",
                                  "Zany zebras zigzag.", "Nothing here."),
    "language:response_language": ({"language": "en"}, "",
                                   "This is a perfectly ordinary English sentence about the weather today.",
                                   "Ceci est une phrase tout à fait ordinaire en français sur le temps qu'il fait."),
    "length_constraints:nth_paragraph_first_word": ({"first_word": "weekend", "num_paragraphs": 2, "nth_paragraph": 2},
                                                    "", "Intro here.\n\nWeekend plans are fun.",
                                                    "Intro here.\n\nMonday plans are dull."),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2}, "", "First part.\n***\nSecond part.",
                                             "First part.\n***\nSecond part.\n***\nThird part."),
    "length_constraints:number_sentences": ({"relation": "less than", "num_sentences": 3}, "", "One. Two.",
                                            "One. Two. Three. Four."),
    "length_constraints:number_words": ({"relation": "at least", "num_words": 300}, "", LONG, "Too short."),
    "punctuation:no_comma": ({}, "", "No commas in this sentence.", "Commas, everywhere, here."),
    "startend:end_checker": ({"end_phrase": "Any other questions?"}, "", "Here it is. Any other questions?",
                             "Here it is."),
    "startend:quotation": ({}, "", '"All of this is quoted."', "Nothing quoted."),
}


@pytest.mark.skipif(not (SHARED_DATA / "ifeval_input_data.jsonl").exists(), reason="../shared/data not present")
def test_every_ifeval_instruction_is_covered():
    ids = {i for line in (SHARED_DATA / "ifeval_input_data.jsonl").read_text().splitlines()
           for i in json.loads(line)["instruction_id_list"]}
    assert ids == set(CASES)


@pytest.mark.parametrize("iid", sorted(CASES))
def test_follows_and_breaks(iid):
    kwargs, prompt, good, bad = CASES[iid]
    checks = [{"id": iid, "kwargs": kwargs}]
    assert follow("ifeval", prompt, checks, good)[0]["strict"] is True
    assert follow("ifeval", prompt, checks, bad)[0]["strict"] is False


def test_loose_drops_a_first_line_and_asterisks():
    checks = [{"id": "startend:quotation", "kwargs": {}}]
    [v] = follow("ifeval", "", checks, 'Sure, here it is:\n"All of this is quoted."')
    assert (v["strict"], v["loose"]) == (False, True)


def test_non_letter_frequency_counts_the_character_asked_for():
    checks = [{"id": "keywords:letter_frequency", "kwargs": {"let_relation": "at least", "letter": "#", "let_frequency": 4}}]
    assert follow("ifeval", "", checks, "#a #b #c #d")[0]["strict"] is True
    assert follow("ifeval", "", checks, "#a #b and no more")[0]["strict"] is False


def test_empty_response_fails_every_instruction():
    checks = [{"id": "punctuation:no_comma", "kwargs": {}}, {"id": "change_case:english_lowercase", "kwargs": {}}]
    verdicts = follow("ifeval", "", checks, "  ")
    assert [(v["strict"], v["loose"]) for v in verdicts] == [(False, False), (False, False)]
    scores, per_id, unscored = aggregate([verdicts])
    assert scores["inst_level_strict_acc"].tolist() == [0.0, 0.0] and unscored == 0


def test_aggregate_prompt_and_instruction_level():
    a = [{"id": "x", "strict": True, "loose": True}, {"id": "y", "strict": False, "loose": True}]
    b = [{"id": "x", "strict": True, "loose": True}]
    scores, per_id, _ = aggregate([a, b])
    assert scores["prompt_level_strict_acc"].tolist() == [0.0, 1.0]
    assert scores["prompt_level_loose_acc"].tolist() == [1.0, 1.0]
    assert scores["inst_level_strict_acc"].mean() == pytest.approx(2 / 3)
    assert per_id == {"x": {"strict": 1.0, "loose": 1.0, "n": 2}, "y": {"strict": 0.0, "loose": 1.0, "n": 1}}
