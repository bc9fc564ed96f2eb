"""Every command publishes its output by renaming a finished temporary sibling: an interrupted command
leaves either nothing or the previous complete result."""
from __future__ import annotations

import pytest

from gift import merge as merge_module
from gift.cli import main
from tests.integration.test_core import do_train


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}"))


def test_failed_merge_leaves_nothing(make_pair, arith_jsonl, tmp_path, monkeypatch):
    base, instruct = make_pair("llama", True)
    adapter = do_train(base, arith_jsonl, tmp_path / "ad", method="sft")
    out = tmp_path / "merged"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while shards were being written

    monkeypatch.setattr(merge_module.Delta, "value", crash)
    assert main(["merge", "--instruct", str(instruct), "--adapter", str(adapter), "--out", str(out)]) == 130
    assert not out.exists() and siblings(out) == []


def test_failed_overwrite_keeps_the_previous_result(make_pair, arith_jsonl, tmp_path, monkeypatch):
    base, instruct = make_pair("llama", True)
    adapter = do_train(base, arith_jsonl, tmp_path / "ad", method="sft")
    out = tmp_path / "merged"
    argv = ["merge", "--instruct", str(instruct), "--adapter", str(adapter), "--out", str(out), "--overwrite"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(merge_module.Delta, "value", disk_full)
    with pytest.raises(OSError, match="disk full"):
        main(argv + ["--scale", "0.5"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and siblings(out) == []


def test_interrupted_annotation_writes_nothing(make_pair, arith_jsonl, tmp_path, monkeypatch):
    from gift import annotate as annotate_module
    _, instruct = make_pair("llama", True)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(annotate_module, "confidences", interrupted)
    out = tmp_path / "ann"
    assert main(["annotate", "--teacher", str(instruct), "--data", str(arith_jsonl), "--out", str(out)]) == 130
    assert not out.exists() and siblings(out) == []


def test_interrupted_training_leaves_only_the_partial_directory(make_pair, arith_jsonl, tmp_path, monkeypatch):
    from gift import train as train_module
    base, _ = make_pair("llama", True)
    real = train_module.save_checkpoint
    calls = []

    def save_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_interrupt)
    out = tmp_path / "ad"
    assert main(["train", "--model", str(base), "--data", str(arith_jsonl), "--out", str(out), "--method", "sft",
                 "--rank", "4", "--max-steps", "4", "--batch-size", "2", "--save-steps", "2"]) == 130
    assert calls and not out.exists()
    assert (tmp_path / "ad.partial" / "checkpoint" / "state.pt").exists()  # what --resume continues from


def test_a_claim_held_by_another_process_is_not_had_without_waiting(tmp_path):
    import subprocess
    import sys

    from gift.atomic import claim

    stage = tmp_path / "adapters" / "gift-s0"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from gift.atomic import claim\n"
                               f"with claim({str(stage)!r}, {str(tmp_path / 'locks')!r}):\n"
                               "    print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with claim(stage, tmp_path / "locks", wait=False) as held:
        assert held is False
    holder.stdin.close()
    holder.wait(timeout=60)
    with claim(stage, tmp_path / "locks", wait=False) as held:
        assert held is True
        # re-entrant: a stage claiming its own inputs does not wait on itself
        with claim(stage, tmp_path / "locks", wait=False) as again:
            assert again is True
