import argparse

import pytest

from gift.config import MergeConfig, TrainConfig, add_arguments, from_args
from gift.errors import GiftError


def parse(cls, argv):
    p = argparse.ArgumentParser()
    add_arguments(p, cls)
    return from_args(cls, p.parse_args(argv))


def test_precedence_default_yaml_flag(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: m\ndata: d\nout: o\nlr: 0.001\nrank: 8\n")
    cfg = parse(TrainConfig, ["--config", str(y), "--rank", "4"])
    assert (cfg.lr, cfg.rank, cfg.alpha) == (0.001, 4, 128.0)
    assert cfg.target_modules == ["all-linear"]


def test_missing_unknown_and_non_finite_settings_are_refused(tmp_path):
    with pytest.raises(GiftError, match="missing required setting --adapter"):
        parse(MergeConfig, ["--instruct", "i", "--out", "o"])
    with pytest.raises(GiftError, match="--scale must be a finite number"):
        parse(MergeConfig, ["--instruct", "i", "--adapter", "a", "--out", "o", "--scale", "nan"])
    y = tmp_path / "c.yaml"
    y.write_text("instruct: i\nadapter: a\nout: o\nscael: 2\n")
    with pytest.raises(GiftError, match="unknown setting 'scael'"):
        parse(MergeConfig, ["--config", str(y)])
    with pytest.raises(GiftError, match="--lr must be a finite positive number"):
        parse(TrainConfig, ["--model", "m", "--data", "d", "--out", "o", "--lr", "inf"])


def test_config_paths_are_relative_to_the_yaml_and_help_shows_defaults(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "train.jsonl").write_text("{}\n")
    (folder / "cfg.yaml").write_text("model: HuggingFaceTB/SmolLM2-135M\ndata: train.jsonl\nout: adapter\n")
    monkeypatch.chdir(tmp_path)
    cfg = parse(TrainConfig, ["--config", str(folder / "cfg.yaml")])
    assert cfg.data == str(folder / "train.jsonl") and cfg.out == str(folder / "adapter")
    assert cfg.model == "HuggingFaceTB/SmolLM2-135M"  # a hub id is not a path
    p = argparse.ArgumentParser()
    add_arguments(p, TrainConfig)
    text = p.format_help()
    assert "(default: 0.0002)" in text and "(default: 64)" in text and "(default: ['all-linear'])" in text
    assert "relative to the file" in text and "(required)" in text


def test_the_model_card_writes_the_scaling_the_merge_used(tmp_path):
    """An rsLoRA adapter is merged with α/√r; the card said α/r for every adapter."""
    import json

    from gift.config import MergeConfig
    from gift.merge import model_card

    for rslora, formula in ((False, "λ·(α/r)·B·A, the adapter"), (True, "λ·(α/√r)·B·A (rsLoRA), the adapter")):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16, "use_rslora": rslora}))
        record = {"tensors": 4, "dtype": "float32", "survival": {"overall": {"kept": 1.0, "error": 0.0}}}
        card = model_card(MergeConfig(instruct="i", adapter=str(tmp_path), out="o"), {}, record)
        assert formula in card


def test_every_command_names_a_guide_that_exists():
    from pathlib import Path

    from gift.cli import COMMANDS, GUIDES

    docs = Path(__file__).parents[2] / "docs"
    assert set(GUIDES) == set(COMMANDS) | {"run", "demo"}
    for text in GUIDES.values():
        assert (docs / text.split("docs/")[1].split(" ")[0]).is_file(), text


def test_run_train_data_override_is_relative_to_where_gift_runs(tmp_path, monkeypatch):
    """`gift run CONFIG --train-data PATH` runs the config's comparison on other rows: PATH is the user's (relative to
    the working directory, not to the config's folder), and nothing else of the config changes."""
    import gift.experiment
    from gift.cli import main
    from gift.experiment import load_run_config

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "rows.jsonl").write_text("{}\n")
    (tmp_path / "rows.jsonl").write_text("{}\n")
    (folder / "run.yaml").write_text("base: b\ninstruct: i\ntrain_data: rows.jsonl\nseeds: [0, 1, 2]\n"
                                     "benchmarks: [{name: t, file: rows.jsonl, kind: math}]\n")
    seen = {}

    def fake_run(config, overrides):
        seen.update(overrides)
        raise GiftError("stop")

    monkeypatch.setattr(gift.experiment, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(folder / "run.yaml"), "--train-data", "rows.jsonl", "--seeds", "0", "1"]) == 2
    cfg = load_run_config(folder / "run.yaml", seen)
    assert cfg.train_data == str(tmp_path / "rows.jsonl") and cfg.seeds == [0, 1]
    assert load_run_config(folder / "run.yaml").train_data == str(folder / "rows.jsonl")


def test_the_cli_leaves_the_process_group_before_exit(tmp_path):
    """Under torchrun a gloo group left to interpreter teardown can abort a finished process (SIGABRT after the
    adapter is published); every command, failed ones included, destroys it first."""
    import torch.distributed as dist

    from gift.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(["train", "--model", str(tmp_path / "none"), "--data", str(tmp_path / "none.jsonl"),
                     "--out", str(tmp_path / "out")]) == 2
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
