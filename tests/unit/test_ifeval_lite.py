import pytest

from gift.ifeval_lite import CHECKS, PARAMS, followed, probes

# kind -> (args, a completion that follows, one that does not)
CASES = {
    "max_words": ({"n": 5}, "Rain falls and rises.", "one two three four five six"),
    "min_words": ({"n": 5}, "one two three four five", "too short"),
    "keywords": ({"words": ["river", "light"]}, "The river caught the light.", "The river was dark."),
    "forbidden": ({"word": "very"}, "It was quite good.", "It was very good."),
    "json": ({}, '```json\n{"topic": "moon"}\n```', "{topic: moon}"),
    "all_caps": ({}, "THE MOON IS BRIGHT.", "The MOON is bright."),
    "all_lower": ({}, "the moon is bright.", "The moon is bright."),
    "bullets": ({"n": 2}, "* one\n* two", "* one\n* two\n- three"),
    "no_commas": ({}, "No commas here.", "Yes, a comma."),
    "end_phrase": ({"phrase": "That is all."}, "Tea is nice. That is all.", "That is all. Tea is nice."),
    "start_word": ({"word": "Today"}, "Today we plant a tree.", "We plant a tree today."),
    "paragraphs": ({"n": 2}, "First part.\n***\nSecond part.", "Only one part."),
    "quoted": ({}, '"All of it quoted."', 'Not "all" quoted.'),
    "title": ({}, "<<Bread>>\nA story of bread.", "<Bread> A story."),
}


def test_every_check_kind_has_a_case():
    assert set(CASES) == set(CHECKS) == set(PARAMS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_checks_accept_and_reject(kind):
    args, good, bad = CASES[kind]
    assert followed(good, {"kind": kind, "args": args})
    assert not followed(bad, {"kind": kind, "args": args})


def test_probe_set_is_large_fixed_and_checkable():
    ps = probes()
    assert len(ps) >= 100 and len({q for _, q, _ in ps}) == len(ps)
    assert ps == probes()
    assert sum(len(checks) == 2 for _, _, checks in ps) >= 20
    for _, _, checks in ps:
        for c in checks:
            followed("", c)  # every check runs on an empty answer without raising
