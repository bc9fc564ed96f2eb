"""The tiny-pair build on a miniature config, and gift run end to end on it (all methods, caching)."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from gift import world
from gift.cli import main
from gift.tiny import TinyConfig, build

MINI = TinyConfig(people=6, vocab_size=400, hidden=32, layers=2, heads=2, intermediate=64, block=32, pretrain_steps=6,
                  pretrain_batch=4, instruct_steps=4, instruct_batch=4,
                  splits={"math": {"train": 24, "dev": 6, "test": 8}, "knowledge": {"train": 8, "dev": 4, "test": 8},
                          "retention": {"dev": 4, "test": 8}})


@pytest.fixture(scope="module")
def mini_pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "tiny"
    return out, build(MINI, out)


def test_build_writes_a_loadable_pair_with_manifest(mini_pair):
    out, manifest = mini_pair
    assert manifest["config"] == dataclasses.asdict(MINI) and manifest["seed"] == 0
    for name, digest in manifest["sha256"].items():
        assert (out / name).is_file() and len(digest) == 64
    base = AutoModelForCausalLM.from_pretrained(out / "base")
    instruct = AutoModelForCausalLM.from_pretrained(out / "instruct")
    assert base.config.to_dict()["hidden_size"] == 32 and type(base) is type(instruct)
    assert any((a != b).any() for a, b in zip(base.parameters(), instruct.parameters()))  # a real post-training delta
    rows = [json.loads(line) for line in (out / "data" / "math_test.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["answer"].endswith(f"The answer is {r['reference']}.") for r in rows)


def assert_same_ids(built, directory):
    """AutoTokenizer.from_pretrained(directory) gives exactly the ids of the tokenizer the build used."""
    loaded = AutoTokenizer.from_pretrained(directory)
    rng = random.Random(7)
    ps = world.people(rng, 5)
    texts = [world.pretraining_doc(rng, ps) for _ in range(50)] + ["Zorba bought 17 ünïcode cups!"]
    chat = [{"role": "user", "content": "Reverse the words: cat dog"}, {"role": "assistant", "content": "dog cat"}]
    texts.append(loaded.apply_chat_template(chat, tokenize=False))
    assert loaded.get_vocab() == built.get_vocab() and loaded.chat_template == built.chat_template
    for t in texts:
        ids = loaded(t, add_special_tokens=False)["input_ids"]
        assert ids == built(t, add_special_tokens=False)["input_ids"] and loaded.decode(ids) == t
    assert loaded.convert_ids_to_tokens(loaded.eos_token_id) == "<|im_end|>"


def test_tokenizer_round_trips_exactly(mini_pair):
    from gift.tiny import world_tokenizer
    out, _ = mini_pair
    built, _, _ = world_tokenizer(MINI)
    for role in ("base", "instruct"):
        assert_same_ids(built, out / role)


def test_bundled_pair_matches_its_manifest():
    from gift.experiment import ASSETS
    from gift.tiny import world_tokenizer
    tiny = ASSETS / "tiny"
    manifest = json.loads((tiny / "manifest.json").read_text())
    import hashlib
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((tiny / name).read_bytes()).hexdigest() == digest, name
    assert sum(f.stat().st_size for f in tiny.rglob("*") if f.is_file()) < 20 * 2**20
    built, _, _ = world_tokenizer(TinyConfig(**manifest["config"]))
    for role in ("base", "instruct"):
        assert_same_ids(built, tiny / role)


def test_world_problems_are_consistent():
    rng = random.Random(1)
    ps = world.people(rng, 5)
    for _ in range(200):
        ex = world.math_example(rng, ps)
        assert 0 <= int(ex["reference"]) <= 2 * world.MAX_N
        k = world.knowledge_example(rng, ps)
        assert k["answer"] == f"The answer is {k['reference']}." and f"{k['reference']}. " in k["question"]
    for kind in world.SKILLS:
        ex = world.general_skill(rng, kind)
        assert ex["completion"]


def test_gift_run_end_to_end_and_resumes_from_cache(mini_pair, tmp_path, capsys):
    out, _ = mini_pair
    config = {
        "base": str(out / "base"), "instruct": str(out / "instruct"), "train_data": str(out / "data" / "math_train.jsonl"),
        "methods": ["base", "instruct", "instruct-sft", "shadow-ft", "gift-baset", "gift", "dft", "rho"], "seeds": [0],
        "annotate": {"max_length": 128}, "train": {"rank": 4, "alpha": 8, "max_steps": 2, "batch_size": 4},
        "eval": {"samples": 2, "max_new_tokens": 8, "batch_size": 16},
        "benchmarks": [
            {"name": "math", "file": "tiny/data/math_test.jsonl", "kind": "math", "answer_field": "reference",
             "instruction": ""},
            {"name": "retention", "file": "tiny/data/retention_test.jsonl", "kind": "exact", "answer_field": "reference",
             "role": "retention"},
            {"name": "dev", "file": "tiny/data/math_dev.jsonl", "kind": "math", "answer_field": "reference", "role": "dev"}],
        "scale_sweep": [0.5, 1.0],
    }
    yaml_path = out.parent / "mini.yaml"  # benchmark files are given relative to the YAML
    yaml_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert main(["run", str(yaml_path), "--out", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "| gift |" in printed and "| shadow-ft |" in printed
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["methods"]) == set(config["methods"])
    assert set(results["signal"]) == {"instruct-sft", "shadow-ft", "gift", "dft", "rho"}  # instruct-annotated ones
    for method in config["methods"]:
        assert set(results["methods"][method]) == {"math", "retention"}
    assert set(results["scale_sweep"]) == {"0.5", "1.0"}
    for fig in ("accuracy.png", "scaling.png", "confidence_hist.png", "signal.png"):
        assert (run_dir / fig).stat().st_size > 1000
    report = (run_dir / "report.md").read_text()
    assert "| method |" in report and "![Accuracy per method](accuracy.png)" in report

    stamp = (run_dir / "adapters" / "gift-s0" / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["run", str(yaml_path), "--out", str(run_dir)]) == 0  # everything cached: nothing recomputed
    assert (run_dir / "adapters" / "gift-s0" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "results.json").read_text())["methods"] == results["methods"]

    assert main(["run", str(yaml_path), "--out", str(run_dir), "--seeds", "1"]) == 2
    assert "holds an experiment with other settings" in capsys.readouterr().err
