"""Real-length batching is exact: length-grouped micro-batches, padding-free (packed) batches and gradient
checkpointing each leave the adapter as the plain padded run trains it (float32, dropout 0)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, OPTConfig

from gift.batching import layout_cost, longest_first, step_layout
from gift.config import ASSETS
from gift.data import IGNORE, Encoded, pack_batch, pad_batch, weighted_batch
from gift.errors import GiftError
from gift.loss import GoldLogprobs, packing_deviation
from gift.train import step_indices
from tests.conftest import VOCAB, save_model, write_jsonl
from tests.integration.test_core import adapter_tensors, do_annotate, do_train, max_rel_diff

EXACT = dict(group_by_length=False, padding_free="off", gradient_checkpointing=False)


@pytest.fixture
def uneven_jsonl(tmp_path):
    """12 rows whose lengths differ by about 2×, so grouping, padding and packing all change the micro-batches."""
    rows = [{"prompt": f"Tom has {a} apples and buys {b} more. How many?",
             "completion": " ".join([f"{a} + {b} = {a + b}."] * (1 + (a * 5 + b) % 8)) + f" The answer is {a + b}."}
            for a, b in [(i % 10, (3 * i) % 10) for i in range(12)]]
    return write_jsonl(tmp_path / "uneven.jsonl", rows)


@pytest.fixture
def uneven_annotation(make_pair, uneven_jsonl, tmp_path):
    base, instruct = make_pair("llama", True)
    return base, do_annotate(instruct, uneven_jsonl, tmp_path / "ann")


def test_the_fixture_regroups_the_first_step(uneven_annotation):
    """Without this the grouping test could pass by doing nothing: step 0's drawn order is not its grouped order."""
    from gift.annotate import read_annotations

    rows, _, _ = read_annotations(uneven_annotation[1])
    lengths = [len(r.input_ids) for r in rows]
    drawn = step_indices(len(rows), 0, 6, seed=0)
    grouped = longest_first(drawn, lengths)
    assert [sorted(drawn[i:i + 2]) for i in (0, 2, 4)] != [sorted(grouped[i:i + 2]) for i in (0, 2, 4)]
    assert max(lengths) > 1.8 * min(lengths)


@pytest.mark.parametrize("method", ["gift", "sft"])
@pytest.mark.parametrize("change", [{"group_by_length": True}, {"padding_free": "on"},
                                    {"gradient_checkpointing": True},
                                    {"group_by_length": True, "padding_free": "on", "gradient_checkpointing": True}])
def test_each_batching_change_leaves_the_adapter_unchanged(uneven_annotation, tmp_path, method, change):
    base, ann = uneven_annotation
    settings = dict(method=method, batch_size=2, grad_accum=3, max_steps=2)
    plain = adapter_tensors(do_train(base, ann, tmp_path / "plain", **settings, **EXACT))
    changed = do_train(base, ann, tmp_path / "changed", **settings, **{**EXACT, **change})
    meta = json.loads((changed / "gift_train.json").read_text())
    assert meta["padding_free"] == ("packed" if change.get("padding_free") == "on" else "padded")
    assert meta["packed_steps"] == (2 if change.get("padding_free") == "on" else 0)
    assert meta["grouped_by_length"] == change.get("group_by_length", False)
    assert max_rel_diff(adapter_tensors(changed), plain) < 1e-5
    assert any(v.abs().max() > 0 for k, v in plain.items() if "lora_B" in k)


@pytest.mark.slow
def test_two_grouped_processes_match_one_plain_process(uneven_annotation, tmp_path):
    """Each process groups its own share (6 rows) of a 12-row step by length; the adapter equals a one-process
    run's in drawn order."""
    base, ann = uneven_annotation
    single = adapter_tensors(do_train(base, ann, tmp_path / "single", batch_size=2, grad_accum=6, **EXACT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gift.cli", "train",
           "--model", str(base), "--data", str(ann), "--out", str(tmp_path / "ddp"), "--rank", "4", "--alpha", "8",
           "--lora-dropout", "0", "--max-steps", "2", "--batch-size", "2", "--grad-accum", "3", "--seed", "0",
           "--group-by-length", "--padding-free", "off", "--gradient-checkpointing"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert max_rel_diff(adapter_tensors(tmp_path / "ddp"), single) < 1e-5


def packed_vs_padded_logp(model: torch.nn.Module, rows: list[Encoded]) -> float:
    scorer = GoldLogprobs(model).eval()
    with torch.no_grad():
        padded = pad_batch(rows, 0)
        packed = pack_batch(rows)
        a = scorer(padded["input_ids"], padded["attention_mask"], padded["labels"])
        b = scorer(packed["input_ids"], None, packed["labels"], position_ids=packed["position_ids"])
    assert a.shape == b.shape and a.numel() > 0
    return float((a - b).abs().max())


def real_rows(tokenizer, n: int = 4) -> list[Encoded]:
    """NuminaMath rows through the model's own chat template, cut to at most 200 tokens (lengths still differ)."""
    from gift.data import encode_all, load_examples, template_options
    from tests.conftest import shared_file

    examples = load_examples(shared_file("numina_cot_2k.jsonl"))[:n]
    rows, _ = encode_all(tokenizer, examples, template_options(None, None, None), 200, True)
    assert len({len(r.input_ids) for r in rows}) > 1
    return rows


def test_packed_forward_equals_padded_on_the_bundled_pair():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ASSETS / "tiny" / "base")
    rows = real_rows(tok)
    for side in ("base", "instruct"):
        model = AutoModelForCausalLM.from_pretrained(ASSETS / "tiny" / side, dtype=torch.float32)
        assert packed_vs_padded_logp(model, rows) < 1e-4


@pytest.mark.parametrize("family", ["qwen2.5", "phi3"])
def test_packed_forward_equals_padded_on_real_layouts(layout_pair, family):
    if not VOCAB.is_dir():
        pytest.skip("../shared/data/vocab not present")
    from gift.model import load_model, load_tokenizer

    base, _ = layout_pair(family)
    assert packed_vs_padded_logp(load_model(str(base)), real_rows(load_tokenizer(str(base)))) < 1e-4


@pytest.mark.slow
def test_packed_forward_equals_padded_on_smollm2(smollm2_dir):
    from gift.model import load_model, load_tokenizer

    path = str(smollm2_dir)
    assert packed_vs_padded_logp(load_model(path), real_rows(load_tokenizer(path), 3)) < 1e-4


def opt_model(tokenizer, path: Path) -> Path:
    """OPT reads positions from the attention mask, not position_ids: packed rows leak into each other."""
    cfg = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                    word_embed_proj_dim=32, max_position_embeddings=256, pad_token_id=0)
    torch.manual_seed(0)
    return save_model(AutoModelForCausalLM.from_config(cfg), tokenizer, path)


def test_the_probe_tells_a_leaking_attention_from_a_sound_one(make_pair, tokenizer, tmp_path):
    rows = [Encoded(list(range(3, 60)), [IGNORE] * 57), Encoded(list(range(5, 40)), [IGNORE] * 35)]
    sound = AutoModelForCausalLM.from_pretrained(make_pair("llama", True)[0])
    leaking = AutoModelForCausalLM.from_pretrained(opt_model(tokenizer, tmp_path / "opt"))
    assert packing_deviation(sound, rows) < 1e-5
    assert packing_deviation(leaking, rows) > 0.05


def test_padding_free_is_refused_where_the_model_leaks_and_skipped_on_auto(tokenizer, uneven_jsonl, tmp_path, capsys):
    model = opt_model(tokenizer, tmp_path / "opt")
    with pytest.raises(GiftError, match="does not keep packed rows apart"):
        do_train(model, uneven_jsonl, tmp_path / "on", method="sft", padding_free="on")
    assert not (tmp_path / "on").exists() and not (tmp_path / "on.partial").exists()
    out = do_train(model, uneven_jsonl, tmp_path / "auto", method="sft")
    assert json.loads((out / "gift_train.json").read_text())["padding_free"] == "padded"
    assert "padding-free batches: off" in capsys.readouterr().out


def test_packed_batch_keeps_the_token_order_of_the_padded_one():
    rows = [Encoded([5, 6, 7, 8], [IGNORE, IGNORE, 7, 8]), Encoded([9, 10, 11], [IGNORE, 10, 11])]
    conf = [[0.0, 0.0, 0.3, 0.4], [0.0, 0.5, 0.6]]
    padded, packed = weighted_batch(rows, conf, {8}, 0), weighted_batch(rows, conf, {8}, 0, packed=True)
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert packed["labels"].tolist() == [[IGNORE, IGNORE, 7, 8, IGNORE, 10, 11]]
    assert "attention_mask" not in packed
    for key in ("q", "is_eot"):
        assert torch.equal(padded[key], packed[key])
    assert packed["q"].tolist() == pytest.approx([0.3, 0.4, 0.5, 0.6])


def test_auto_layout_packs_long_rows_and_pads_many_short_ones():
    """The per-step choice by estimated work: the two cases measured on this CPU (SmolLM2's four long rows in drawn
    order: packing 1.6× faster; the bundled pair's 32 rows of ~70 tokens: packing 2.4× slower)."""
    long_rows, short_rows = [639, 686, 864, 1432], [60 + (7 * i) % 25 for i in range(32)]
    groups, packed = step_layout(list(range(4)), long_rows, 4, "cheaper", True, width=3456.0, varlen=False)
    assert packed and groups == [[0, 1, 2, 3]]
    groups, packed = step_layout(list(range(32)), short_rows, 32, "cheaper", True, width=832.0, varlen=False)
    assert not packed and [short_rows[i] for i in groups[0]] == sorted(short_rows, reverse=True)
    assert step_layout(list(range(32)), short_rows, 32, "cheaper", True, width=832.0, varlen=True)[1]  # flash: free
    assert layout_cost([[0, 1]], [3, 1], packed=False, width=10, varlen=False) == 10 * 2 * 3 + 2 * 9
    assert layout_cost([[0, 1]], [3, 1], packed=True, width=10, varlen=False) == 10 * 4 + 16


def test_gift_trainer_probes_a_packing_collator_whatever_the_config_says(tokenizer, uneven_jsonl, tmp_path):
    """GIFTCollator(padding_free=True) packs even with SFTConfig.padding_free False: on OPT, whose attention mixes
    packed rows, GIFTTrainer trained silently wrong; it now runs the probe and refuses."""
    pytest.importorskip("trl")
    from peft import LoraConfig, get_peft_model

    from gift import GIFTCollator, load_annotations
    from gift.trl import GIFTTrainer, SFTConfig

    path = opt_model(tokenizer, tmp_path / "opt")
    ann = do_annotate(path, uneven_jsonl, tmp_path / "ann")
    data = load_annotations(ann, tokenizer)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), LoraConfig(r=4, target_modules="all-linear"))
    args = SFTConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, report_to="none", bf16=False, padding_free=False)
    collator = GIFTCollator(tokenizer.pad_token_id, json.loads(data.info.description)["eot_token_ids"], True)
    with pytest.raises(GiftError, match="does not keep packed rows apart"):
        GIFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, data_collator=collator)
