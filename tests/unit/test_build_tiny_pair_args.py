"""scripts/build_tiny_pair.py's --set: repeated flags add up, as PROVENANCE.md writes the command."""
from pathlib import Path

import pytest

from tests.conftest import load_script

script = load_script(Path(__file__).parents[2] / "scripts" / "build_tiny_pair.py")


def test_every_repeated_set_is_applied():
    args = script.parser().parse_args(["--set", "two_step_share=0.01", "--set", "chat_log_share=0.08",
                                       "--set", 'chat_log_mix={"one_step": 0.4}', "instruct_steps=10"])
    got = script.overrides(script.TinyConfig(), args.set)
    assert got["two_step_share"] == 0.01 and got["chat_log_share"] == 0.08 and got["instruct_steps"] == 10
    assert set(got) == {"two_step_share", "chat_log_share", "chat_log_mix", "instruct_steps"}


def test_a_field_set_twice_is_refused():
    args = script.parser().parse_args(["--set", "chat_log_share=0.08", "--set", "chat_log_share=0.1"])
    with pytest.raises(SystemExit, match="chat_log_share is set twice"):
        script.overrides(script.TinyConfig(), args.set)


def test_a_mix_may_name_any_kind_of_the_world_and_nothing_else():
    args = script.parser().parse_args(["--set", 'instruct_mix={"sheep_problem": 0.06}'])
    assert script.overrides(script.TinyConfig(), args.set)["instruct_mix"]["sheep_problem"] == 0.06
    args = script.parser().parse_args(["--set", 'prose_mix={"one_flock": 0.015}'])
    assert script.overrides(script.TinyConfig(), args.set)["prose_mix"] == {"one_flock": 0.015}  # no default to update
    for setting in ('instruct_mix={"goats": 0.06}', 'prose_mix={"goats": 0.01}', 'chat_log_mix={"goats": 0.1}'):
        with pytest.raises(SystemExit, match="keys among"):
            script.overrides(script.TinyConfig(), script.parser().parse_args(["--set", setting]).set)
