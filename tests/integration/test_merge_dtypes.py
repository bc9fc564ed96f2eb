"""Defects found in review, each failing on the code before its fix: a bf16 merge that saved the unmerged model (and
a parity check that passed it), --combine on a tied pair in the float32 path, trainable tokens merged silently."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from gift.config import MergeConfig
from gift.errors import GiftError
from gift.merge import merge, parity, parity_failure, read_adapter
from gift.model import load_model
from gift.tiny import random_adapter


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_half_precision_merge_saves_the_merged_weights(make_pair, tmp_path, dtype):
    _, instruct = make_pair("llama", tied=True)
    adapter = random_adapter(instruct, tmp_path / "adapter")
    out = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "m"), dtype=dtype))
    saved = load_file(out / "model.safetensors")
    weights = load_file(instruct / "model.safetensors")
    deltas, _ = read_adapter(adapter, False)
    for name, delta in deltas.items():
        want = weights[name].float() + delta.value(weights[name].shape, name)
        got = saved[name]
        assert got.dtype == getattr(torch, dtype)
        rounding = torch.finfo(got.dtype).eps * want.abs().max()
        assert (got.float() - want).abs().max() <= rounding  # W_I + ΔW to the saved dtype's rounding
        assert (got.float() - weights[name].float()).abs().max() > 10 * rounding  # not W_I
    record = json.loads((out / "gift_merge.json").read_text())
    assert record["dtype"] == dtype and record["survival"]["overall"]["kept"] > 0.95
    assert record["parity"]["deviation"] < 0.5 * record["parity"]["unmerged_deviation"]


def test_the_parity_check_fails_an_unmerged_half_precision_model(make_pair, tmp_path):
    """The instruct model saved in bf16 under the merge's name: as far from PeftModel(instruct, adapter) as the
    instruct model itself, which the bf16 check refuses (the float32-only tolerance passed it at 1.67)."""
    _, instruct = make_pair("llama", tied=True)
    adapter = random_adapter(instruct, tmp_path / "adapter")
    unmerged = tmp_path / "unmerged"
    load_model(str(instruct), "bfloat16").save_pretrained(unmerged)
    cfg = MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "m"))
    check = parity(cfg, unmerged, torch.bfloat16)
    assert check["deviation"] == pytest.approx(check["unmerged_deviation"], rel=0.2)
    assert "the unmerged instruct model differs by" in parity_failure(check, {"kept": 1.0, "error": 0.0})
    assert parity_failure({**check, "deviation": check["unmerged_deviation"] / 10}, {"kept": 1.0, "error": 0.0}) is None


def test_combine_merges_a_tied_pair_in_the_float32_path(make_pair, tmp_path):
    base, instruct = make_pair("llama", tied=True)
    adapter = random_adapter(base, tmp_path / "adapter")
    for combine in ("ties", "dare_linear"):
        out = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / combine),
                                base=str(base), combine=combine, density=0.5, dtype="float32"))
        model = load_model(str(out), "float32")
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied


def test_trainable_tokens_are_refused_in_one_line(make_pair, tmp_path):
    _, instruct = make_pair("llama", tied=True)
    adapter = random_adapter(instruct, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "trainable_token_indices": [5, 7]}))
    with pytest.raises(GiftError, match="trainable tokens"):
        merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
