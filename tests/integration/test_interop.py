"""What gift writes, read by the tools users already have: PEFT, transformers, datasets, TensorBoard."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.integration.test_core import do_annotate, do_train


def test_adapter_merged_and_annotations_load_in_their_libraries(make_pair, arith_jsonl, tmp_path):
    import datasets
    from peft import PeftModel

    from gift.config import MergeConfig
    from gift.merge import merge

    base, instruct = make_pair("llama", False)
    ann = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    table = datasets.load_dataset("parquet", data_files=str(ann / "annotations.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf"))
    assert len(table) == 8 and {"input_ids", "labels", "confidence"} <= set(table.column_names)

    adapter = do_train(base, ann, tmp_path / "ad", lr=1e-2)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base)  # trained on base: AutoPeftModel would load base, not instruct
    merged = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "m")))
    tok = AutoTokenizer.from_pretrained(merged)
    text = tok.apply_chat_template([{"role": "user", "content": "Tom has 3 apples"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.startswith("<|im_start|>user") and text.endswith("<|im_start|>assistant\n")
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ours = AutoModelForCausalLM.from_pretrained(merged)(input_ids=ids).logits
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(instruct), adapter).eval()
        theirs = peft(input_ids=ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_tensorboard_events_and_held_out_loss(make_pair, arith_jsonl, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base, instruct = make_pair("llama", True)
    ann = do_annotate(instruct, arith_jsonl, tmp_path / "ann")
    out = do_train(base, ann, tmp_path / "ad", max_steps=4, lr=1e-2, report_to="tensorboard", eval_data=str(ann),
                   eval_steps=2)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert ["eval_loss" in r for r in log] == [False, True, False, True]
    assert log[3]["eval_loss"] < log[1]["eval_loss"]  # training on these rows lowers their loss
    [events] = (out / "tracker").glob("events.out.tfevents.*")  # the scalars (hparams sit in a folder beside)
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"loss", "lr", "grad_norm", "mean_weight", "low_conf_loss_share", "eval_loss"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
