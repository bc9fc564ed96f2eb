"""gift merge's --combine against mergekit's own TIES/DARE, its rounding report, and its parity check."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from gift.combine import Survival, combine, tensor_seed
from gift.config import MergeConfig
from gift.errors import GiftError
from gift.merge import merge
from tests.integration.test_core import adapter_tensors, do_train

mergekit = pytest.importorskip("mergekit.merge_methods.api", reason="mergekit is a test dependency")


def mergekit_merge(base, instruct, task_model, method, scale, density, normalize):
    """mergekit's merge of one tensor: base, the instruct model (weight 1), base + ΔW (weight λ)."""
    parameters = {"weight": {"i": 1.0, "t": scale}, "density": {"i": density, "t": density}, "normalize": normalize}
    return mergekit.merge_tensors([base, instruct, task_model], method, parameters=parameters, ids=["b", "i", "t"],
                                  base_index=0)


@pytest.mark.parametrize("method", ["ties", "dare_ties", "dare_linear"])
@pytest.mark.parametrize("normalize", [False, True])
def test_combine_equals_mergekit_on_random_tensors(method, normalize):
    torch.manual_seed(0)
    base = torch.randn(24, 16)
    chat, task = 0.1 * torch.randn(24, 16), 0.05 * torch.randn(24, 16)
    seed = tensor_seed(3, "w")
    ours = combine(base, chat, task, 0.5, method, 0.6, normalize, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)  # mergekit draws DARE's masks from the global generator, instruct's first
    theirs = mergekit_merge(base, base + chat, base + task, method, 0.5, 0.6, normalize)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(ours, base + chat + 0.5 * task)  # the density did something


@pytest.mark.parametrize("method", ["ties", "dare_linear"])
def test_gift_merge_combine_equals_mergekit_on_a_pair(make_pair, arith_jsonl, tmp_path, method):
    base_dir, instruct_dir = make_pair("llama", False)
    adapter = do_train(base_dir, arith_jsonl, tmp_path / "ad", method="sft", lr=1e-2)
    out = merge(MergeConfig(instruct=str(instruct_dir), adapter=str(adapter), out=str(tmp_path / "m"), scale=0.5,
                            combine=method, density=0.7, seed=5))
    base, instruct = load_file(base_dir / "model.safetensors"), load_file(instruct_dir / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    lora = adapter_tensors(adapter)
    for name in base:
        module = name.removesuffix(".weight")
        a = lora.get(f"base_model.model.{module}.lora_A.weight")
        delta = (8.0 / 4) * lora[f"base_model.model.{module}.lora_B.weight"] @ a if a is not None else 0
        torch.manual_seed(tensor_seed(5, name))
        want = mergekit_merge(base[name], instruct[name], base[name] + delta, method, 0.5, 0.7, False)
        torch.testing.assert_close(merged[name], want, rtol=1e-5, atol=1e-6, msg=name)
    record = json.loads((out / "gift_merge.json").read_text())
    assert record["tensors"] == len(base) and "parity" not in record


def test_survival_is_one_in_float32_and_measures_what_bfloat16_drops():
    instruct = torch.full((64, 64), 1.0)
    s = Survival()
    for name, change, dtype in (("a.q_proj.weight", 1e-3, torch.float32),  # far above float32's ulp at 1
                                ("a.v_proj.weight", 1e-3, torch.bfloat16),  # bf16's ulp at 1 is 2^-7: rounds to 1
                                ("a.o_proj.weight", 2**-7, torch.bfloat16)):  # exactly one ulp: kept
        s.add(name, instruct, instruct + change, (instruct + change).to(dtype))  # as the file holds it
    shares = s.shares()
    assert shares["q_proj"]["kept"] == pytest.approx(1.0, abs=1e-6) and shares["v_proj"]["kept"] == 0.0
    assert shares["v_proj"]["error"] == pytest.approx(1.0) and shares["o_proj"]["kept"] == pytest.approx(1.0)
    n = 64 * 64  # overall: <R, D> summed over the three families against |D|² summed
    assert shares["overall"]["kept"] == pytest.approx((n * 1e-6 + n * 2**-14) / (2 * n * 1e-6 + n * 2**-14), rel=1e-3)


def test_merge_reports_rounding_and_parity(make_pair, arith_jsonl, tmp_path, capsys):
    base_dir, instruct_dir = make_pair("llama", True)
    adapter = do_train(base_dir, arith_jsonl, tmp_path / "ad", method="sft", lr=1e-2)
    fp32 = merge(MergeConfig(instruct=str(instruct_dir), adapter=str(adapter), out=str(tmp_path / "m32")))
    record = json.loads((fp32 / "gift_merge.json").read_text())
    assert record["survival"]["overall"]["kept"] == pytest.approx(1.0, abs=1e-5)
    assert record["parity"]["deviation"] < 1e-4 and record["parity"]["top1_agreement"] == 1.0
    assert record["rounding_warning"] is None
    card = (fp32 / "README.md").read_text()
    assert "surviving share" in card and "Parity with PeftModel" in card
    # an instruct model stored in bf16 and a λ small enough that its rounding drops most of the change: the report
    # says so and the merge warns
    from transformers import AutoModelForCausalLM
    stored = tmp_path / "instruct-bf16"
    AutoModelForCausalLM.from_pretrained(instruct_dir, dtype=torch.bfloat16).save_pretrained(stored)
    for f in instruct_dir.iterdir():
        if not f.name.startswith(("model", "config")):
            (stored / f.name).write_bytes(f.read_bytes())
    bf16 = merge(MergeConfig(instruct=str(stored), adapter=str(adapter), out=str(tmp_path / "m16"), scale=1e-3))
    record = json.loads((bf16 / "gift_merge.json").read_text())
    overall = record["survival"]["overall"]  # rounding decides this model: noise 4x the change, about as often up
    assert record["dtype"] == "bfloat16" and (overall["kept"] < 0.5 or overall["error"] > 1)  # as down
    assert "keeps only" in capsys.readouterr().err and "keeps only" in record["rounding_warning"]
    # a float32 instruct model saved in bf16: off the bf16 grid, the change survives on average but as rounding
    # noise, which the relative error shows
    cast = merge(MergeConfig(instruct=str(instruct_dir), adapter=str(adapter), out=str(tmp_path / "m16b"),
                             dtype="bfloat16", scale=1e-3))
    record = json.loads((cast / "gift_merge.json").read_text())
    assert record["survival"]["overall"]["error"] > 1 and "rounding error" in capsys.readouterr().err


def test_a_merge_that_breaks_parity_is_refused_and_nothing_written(make_pair, arith_jsonl, tmp_path, monkeypatch):
    base_dir, instruct_dir = make_pair("llama", True)
    adapter = do_train(base_dir, arith_jsonl, tmp_path / "ad", method="sft", lr=1e-2)
    tensors = load_file(adapter / "adapter_model.safetensors")
    name = next(k for k in tensors if "lora_A" in k)
    from gift import merge as merge_module
    real = merge_module.Merger.value

    def off_by_a_bit(self, n, instruct):  # a merge bug: one tensor gets 10% more than λΔW
        out = real(self, n, instruct)
        return out + 0.1 * (out - instruct) if n.endswith(name.split(".lora_A")[0].removeprefix(
            "base_model.model.") + ".weight") else out

    monkeypatch.setattr(merge_module.Merger, "value", off_by_a_bit)
    with pytest.raises(GiftError, match="parity check failed"):
        merge(MergeConfig(instruct=str(instruct_dir), adapter=str(adapter), out=str(tmp_path / "bad")))
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.tmp-*"))


@pytest.mark.parametrize("settings, message", [({"density": 0.5}, "apply to --combine"),
                                               ({"normalize": True}, "apply to --combine"),
                                               ({"combine": "ties", "density": 0.0}, "--density must be in")])
def test_combine_settings_are_checked(settings, message):
    with pytest.raises(GiftError, match=message):
        MergeConfig(instruct="i", adapter="a", out="o", **settings)
