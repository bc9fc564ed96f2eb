"""annotate -> train -> merge on tiny random pairs (Llama and Qwen2, tied and untied embeddings)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from gift.annotate import annotate
from gift.cli import main
from gift.config import AnnotateConfig, MergeConfig, TrainConfig
from gift.data import IGNORE
from gift.errors import GiftError
from gift.merge import merge
from gift.tiny import build_tokenizer, model_config, random_model
from gift.train import train
from tests.conftest import save_model

LORA = dict(rank=4, alpha=8.0, lora_dropout=0.0)


def do_annotate(teacher: Path, data: Path, out: Path) -> Path:
    return annotate(AnnotateConfig(teacher=str(teacher), data=str(data), out=str(out)))


def do_train(model: Path, data: Path, out: Path, **kw) -> Path:
    settings = {**LORA, "max_steps": 2, "batch_size": 4, "seed": 0, **kw}
    return train(TrainConfig(model=str(model), data=str(data), out=str(out), **settings))


def adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "adapter_model.safetensors")


def max_rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)).item() for k in a)


@pytest.mark.parametrize("arch, tied", [("llama", True), ("llama", False), ("qwen2", True), ("qwen2", False)])
def test_annotation_is_the_teachers_gold_token_probability(make_pair, arith_jsonl, tmp_path, arch, tied):
    _, instruct = make_pair(arch, tied)
    out = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    table = pq.read_table(out / "annotations.parquet").to_pydict()
    meta = json.loads((out / "meta.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(instruct)
    assert meta["rows"] == 8 and meta["eot_token_ids"] == [AutoTokenizer.from_pretrained(instruct).eos_token_id]
    for ids, labels, conf in zip(table["input_ids"], table["labels"], table["confidence"]):
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)  # independent full softmax
        for t, (y, q) in enumerate(zip(labels, conf)):
            if y == IGNORE:
                assert q == 0.0
            else:
                assert q == pytest.approx(probs[t - 1, y].item(), rel=1e-4, abs=1e-7)


def test_gradient_accumulation_layouts_give_the_same_adapter(make_pair, arith_jsonl, tmp_path):
    base, instruct = make_pair("llama", True)
    ann = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    adapters = [adapter_tensors(do_train(base, ann, tmp_path / f"a{bs}", batch_size=bs, grad_accum=4 // bs))
                for bs in (4, 2, 1)]
    assert max_rel_diff(adapters[1], adapters[0]) < 1e-4
    assert max_rel_diff(adapters[2], adapters[0]) < 1e-4
    # the normalisation is over the step: a per-micro-batch mean would differ here, since rows differ in weight
    assert any(v.abs().max() > 0 for k, v in adapters[0].items() if "lora_B" in k)


@pytest.mark.slow
def test_two_process_run_matches_one_process(make_pair, arith_jsonl, tmp_path):
    base, instruct = make_pair("llama", True)
    ann = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    single = adapter_tensors(do_train(base, ann, tmp_path / "single", batch_size=2, grad_accum=2))
    # accelerate's own multi-CPU launcher needs MPI; torchrun sets the same environment and Accelerator reads it.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gift.cli", "train",
           "--model", str(base),
           "--data", str(ann), "--out", str(tmp_path / "ddp"), "--rank", "4", "--alpha", "8", "--lora-dropout", "0",
           "--max-steps", "2", "--batch-size", "1", "--grad-accum", "2", "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "gift_train.json").read_text())["processes"] == 2
    assert max_rel_diff(adapter_tensors(tmp_path / "ddp"), single) < 1e-4


def test_two_processes_see_every_row_when_an_epoch_ends_unevenly(make_pair, tmp_path):
    """7 rows, global batch 6 on 2 processes: the second step has one row, so one process has none. Nothing
    crashes, no row is dropped, and the adapter equals a one-process run's."""
    from tests.conftest import write_jsonl

    base, instruct = make_pair("llama", True)
    rows = [{"prompt": f"Tom has {a} apples", "completion": f"{a} + 1 = {a + 1}."} for a in range(7)]
    ann = do_annotate(instruct, write_jsonl(tmp_path / "seven.jsonl", rows), tmp_path / "ann")
    single = do_train(base, ann, tmp_path / "single", batch_size=1, grad_accum=6, max_steps=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gift.cli", "train",
           "--model", str(base), "--data", str(ann), "--out", str(tmp_path / "ddp"), "--rank", "4", "--alpha", "8",
           "--lora-dropout", "0", "--max-steps", "2", "--batch-size", "1", "--grad-accum", "3", "--seed", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [[json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()] for d in (single, tmp_path / "ddp")]
    assert [r["tokens"] for r in logs[0]] == [r["tokens"] for r in logs[1]]  # the same rows, all 7 of them
    assert max_rel_diff(adapter_tensors(tmp_path / "ddp"), adapter_tensors(single)) < 1e-4


def test_training_changes_only_the_adapter(make_pair, arith_jsonl, tmp_path):
    base, _ = make_pair("llama", True)
    out = do_train(base, arith_jsonl, tmp_path / "sft", method="sft")
    tensors = adapter_tensors(out)
    assert all(v.abs().max() > 0 for k, v in tensors.items() if "lora_B" in k)  # B starts at zero: it moved
    assert not any("lora" not in k for k in tensors)  # the base weights are not in the adapter
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["low_conf_weight_share"] is None for r in log)
    assert not (tmp_path / "sft.partial").exists()


@pytest.mark.parametrize("arch, tied", [("llama", True), ("qwen2", False)])
def test_merge_equals_the_formula_and_peft(make_pair, arith_jsonl, tmp_path, arch, tied):
    from peft import PeftModel

    base, instruct = make_pair(arch, tied)
    adapter = do_train(base, arith_jsonl, tmp_path / "ad", method="sft", lr=1e-2)
    merged = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "m"), scale=0.5))
    before, after = load_file(instruct / "model.safetensors"), load_file(merged / "model.safetensors")
    lora = adapter_tensors(adapter)
    name = "model.layers.0.self_attn.q_proj"
    a, b = lora[f"base_model.model.{name}.lora_A.weight"], lora[f"base_model.model.{name}.lora_B.weight"]
    torch.testing.assert_close(after[f"{name}.weight"], before[f"{name}.weight"] + 0.5 * (8.0 / 4) * b @ a)
    assert not torch.equal(after[f"{name}.weight"], before[f"{name}.weight"])
    torch.testing.assert_close(after["model.norm.weight"], before["model.norm.weight"])

    full = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "m1")))
    peft_merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(instruct), adapter).merge_and_unload()
    ours = AutoModelForCausalLM.from_pretrained(full)
    for (k, v), (k2, v2) in zip(peft_merged.state_dict().items(), ours.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=1e-5, atol=1e-6)
    assert AutoTokenizer.from_pretrained(full).chat_template == AutoTokenizer.from_pretrained(instruct).chat_template


def test_mismatched_pairs_are_refused_before_writing(make_pair, arith_jsonl, tmp_path, tokenizer):
    base, _ = make_pair("llama", True)
    adapter = do_train(base, arith_jsonl, tmp_path / "ad", method="sft")
    cases = {
        "architecture differs: the adapter's model is llama, the instruct model is qwen2": make_pair("qwen2", True)[1],
        "hidden_size differs": make_pair("llama", True, hidden=48)[1],
        "num_hidden_layers differs": make_pair("llama", True, layers=3)[1],
    }
    other_tok = build_tokenizer(["zebra quantum " * 3, "völlig anders"], vocab_size=300)
    cases["vocab_size differs"] = save_model(random_model(model_config("llama", len(other_tok)), 0), other_tok,
                                             tmp_path / "other_vocab")
    shuffled = build_tokenizer([" ".join(reversed(t.split())) for t in tokenizer_texts()], vocab_size=len(tokenizer))
    assert len(shuffled) == len(tokenizer)
    cases["the tokenizers differ"] = save_model(random_model(model_config("llama", len(shuffled)), 0), shuffled,
                                                tmp_path / "other_tokenizer")
    for message, instruct in cases.items():
        out = tmp_path / "never"
        with pytest.raises(GiftError, match=message):
            merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(out)))
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_annotation_from_another_tokenizer_is_refused(make_pair, arith_jsonl, tmp_path, tokenizer):
    _, instruct = make_pair("llama", True)
    ann = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    shuffled = build_tokenizer([" ".join(reversed(t.split())) for t in tokenizer_texts()], vocab_size=len(tokenizer))
    other = save_model(random_model(model_config("llama", len(shuffled)), 0), shuffled, tmp_path / "other")
    with pytest.raises(GiftError, match="annotated with a tokenizer .* that differs"):
        do_train(other, ann, tmp_path / "ad")


def test_cli_runs_the_three_commands(make_pair, arith_jsonl, tmp_path, capsys):
    base, instruct = make_pair("llama", True)
    assert main(["annotate", "--teacher", str(instruct), "--data", str(arith_jsonl), "--out", str(tmp_path / "ann")]) == 0
    assert main(["train", "--model", str(base), "--data", str(tmp_path / "ann"), "--out", str(tmp_path / "ad"),
                 "--rank", "4", "--alpha", "8", "--max-steps", "1"]) == 0
    assert main(["merge", "--instruct", str(instruct), "--adapter", str(tmp_path / "ad"), "--out", str(tmp_path / "m")]) == 0
    assert main(["merge", "--instruct", str(instruct), "--adapter", str(tmp_path / "ad"), "--out", str(tmp_path / "m")]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err


def tokenizer_texts() -> list[str]:
    from tests.conftest import CORPUS
    return CORPUS


@pytest.mark.parametrize("feature,lora_kwargs", [
    ("DoRA", {"use_dora": True}),
    ("lora_bias", {"lora_bias": True}),
    ("trained biases", {"bias": "all"}),
    ("embedding layer", {"target_modules": ["embed_tokens", "q_proj"]}),
    ("modules_to_save", {"modules_to_save": ["lm_head"]}),
    ("init_lora_weights='pissa'", {"init_lora_weights": "pissa"}),  # PEFT rewrote the base weights to W − B₀A₀
    ("init_lora_weights='olora'", {"init_lora_weights": "olora"}),
])
def test_merge_refuses_adapter_features_it_cannot_merge_exactly(make_pair, tmp_path, feature, lora_kwargs, capsys):
    """Each of these makes PEFT's merge differ from W + λ(α/r)BA: gift merge names it and writes nothing."""
    from peft import LoraConfig, get_peft_model

    _, instruct = make_pair()
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False,
                **lora_kwargs}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(instruct), LoraConfig(**settings))
    model.save_pretrained(tmp_path / "adapter")
    out = tmp_path / "merged"
    capsys.readouterr()
    assert main(["merge", "--instruct", str(instruct), "--adapter", str(tmp_path / "adapter"), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gift: error:")]
    assert len(err) == 1 and feature in err[0] and "merge_and_unload" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".merged*"))


@pytest.mark.parametrize("extra", [{}, {"alpha_pattern": {"q_proj|v_proj": 4}},  # one grouped alternative, as PEFT
                                   {"alpha_pattern": {"layers.1.self_attn.v_proj": 2}, "rank_pattern": {"down_proj": 2}},
                                   {"init_lora_weights": "gaussian"}])
def test_plain_peft_adapter_merges_like_peft(make_pair, tmp_path, extra):
    """A plain LoRA adapter made by PEFT itself (no gift_train.json) merges to PEFT's logits, per-module α and r
    patterns included."""
    from peft import LoraConfig, PeftModel, get_peft_model

    _, instruct = make_pair()
    settings = {"init_lora_weights": False, **extra}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(instruct),
                           LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], **settings))
    if extra.get("init_lora_weights") == "gaussian":  # B starts at zero: move it, or the merge changes nothing
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
    model.save_pretrained(tmp_path / "adapter")
    ours = AutoModelForCausalLM.from_pretrained(merge(MergeConfig(instruct=str(instruct), adapter=str(tmp_path / "adapter"),
                                                                  out=str(tmp_path / "m"))))
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(instruct), tmp_path / "adapter").merge_and_unload()
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, ref(ids).logits, atol=1e-4, rtol=1e-4)
