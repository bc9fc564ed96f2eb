"""Candidates served, not written: an adapter applied at run time at scale λ equals the merged model (logits, greedy
completions, scores), λ is never ignored, a run writes only the shipped model, and the vLLM path hands its engine
the arguments vLLM's API takes (a recording fake of vllm.LLM: vLLM installs on neither this CPU nor the GPU image)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from gift.benchmarks import from_spec
from gift.config import ASSETS, EvalConfig, MergeConfig
from gift.errors import GiftError
from gift.evaluate import evaluate, render_prompts
from gift.merge import merge
from gift.model import load_model, load_tokenizer
from gift.serve import Candidate, HFServer, VLLMServer, unservable
from gift.tiny import random_adapter
from tests.conftest import shared_file

TINY = ASSETS / "tiny"
DEV = {"name": "dev", "file": str(TINY / "tasks" / "paper" / "dev.jsonl"), "kind": "math", "answer_field": "reference",
       "instruction": ""}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Three method kinds on the bundled pair: a plain adapter trained on base (Shadow-FT / GIFT), an rsLoRA one,
    and one trained on instruct (Instruct-SFT)."""
    root = tmp_path_factory.mktemp("adapters")
    return {"plain": random_adapter(TINY / "base", root / "plain"),
            "rslora": random_adapter(TINY / "base", root / "rslora", rslora=True, seed=1),
            "instruct-sft": random_adapter(TINY / "instruct", root / "instruct-sft", seed=2)}


def logits(model, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(input_ids=tokenizer(t, return_tensors="pt").input_ids).logits for t in texts]


TEXTS = ["Question: What is 17 + 25? Answer:", "Tom has 3 apples and buys 4 more."]


@pytest.mark.parametrize("kind", ["plain", "rslora", "instruct-sft"])
@pytest.mark.parametrize("scale", [0.25, 1.0])
def test_served_candidate_equals_its_merged_model(adapters, kind, scale, tmp_path):
    """The served weights are the merged file's to the bit in float32, so logits (to 1e-5), greedy completions and
    scores on a dev benchmark are the same."""
    merged = merge(MergeConfig(instruct=str(TINY / "instruct"), adapter=str(adapters[kind]), out=str(tmp_path / "m"),
                               scale=scale, dtype="float32"))
    hf = HFServer(str(TINY / "instruct"), "float32")
    bench = from_spec(DEV, 40)
    with hf.serve(Candidate(str(adapters[kind]), scale)) as served:
        got = logits(served.model, served.tokenizer, TEXTS)
        written = load_model(str(merged), "float32").state_dict()  # the merge's own arithmetic: equal to the bit
        assert all(torch.equal(t, written[n]) for n, t in served.model.state_dict().items())
        evaluate(EvalConfig(model=served.label, bench=["dev"], out=str(tmp_path / "served"), max_new_tokens=24),
                 [bench], quiet=True, served=served)
    want = logits(load_model(str(merged), "float32"), hf.tokenizer, TEXTS)
    with hf.serve(Candidate()) as plain:  # λ must not be ignored: the candidate is not the instruct model
        instruct = logits(plain.model, plain.tokenizer, TEXTS)
    for g, w, i in zip(got, want, instruct):
        assert (g - w).abs().max() <= 1e-5 * w.abs().max()
        assert (g - i).abs().max() > 1e-2 * i.abs().max()
    evaluate(EvalConfig(model=str(merged), bench=["dev"], out=str(tmp_path / "merged"), max_new_tokens=24), [bench],
             quiet=True)
    rows = [[json.loads(line) for line in (tmp_path / side / "samples.jsonl").read_text().splitlines()]
            for side in ("served", "merged")]
    assert [r["greedy"] for r in rows[0]] == [r["greedy"] for r in rows[1]]
    results = [json.loads((tmp_path / side / "results.json").read_text())["benchmarks"]["dev"]["metrics"]
               for side in ("served", "merged")]
    assert results[0] == results[1]


@pytest.mark.parametrize("family", ["qwen2.5", "phi3"])
def test_served_equals_merged_on_a_real_layout(layout_pair, family, tmp_path):
    """The real Qwen2.5 (untied lm_head, 152,064 rows) and Phi-3 (fused qkv_proj, gate_up_proj) layouts: the served
    weights are the merged file's to the bit, for an adapter trained on base and one on instruct, at λ 0.25 and 1,
    and λ 0 gives instruct's weights back exactly."""
    from tests.conftest import VOCAB

    if not VOCAB.is_dir():
        pytest.skip("../shared/data/vocab is absent")
    base, instruct = layout_pair(family)
    hf = HFServer(str(instruct), "float32")
    original = {n: t.clone() for n, t in hf.model.state_dict().items()}
    for i, side in enumerate((base, instruct)):
        adapter = random_adapter(side, tmp_path / f"a{i}", seed=i)
        for scale in (0.25, 1.0):
            merged = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / f"m{i}-{scale}"),
                                       scale=scale, dtype="float32"))
            written = load_model(str(merged), "float32").state_dict()
            with hf.serve(Candidate(str(adapter), scale)) as served:
                state = served.model.state_dict()
                assert all(torch.equal(t, written[n]) for n, t in state.items())
                assert any(not torch.equal(t, original[n]) for n, t in state.items())
    with hf.serve(Candidate()) as plain:
        assert all(torch.equal(t, original[n]) for n, t in plain.model.state_dict().items())


def test_scale_is_applied_not_ignored(adapters):
    """lm-eval #2432's failure mode: adapter results equal to the base model's. λ 0.25, 1 and 0 (adapters off) give
    three different models, and switching back gives the first again exactly."""
    hf = HFServer(str(TINY / "instruct"), "float32")
    seen = {}
    for scale in (0.25, 1.0, 0.0, 0.25):
        with hf.serve(Candidate(str(adapters["plain"]), scale)) as served:
            seen.setdefault(scale, []).append(logits(served.model, served.tokenizer, TEXTS[:1])[0])
    assert torch.equal(seen[0.25][0], seen[0.25][1])
    assert not torch.allclose(seen[0.25][0], seen[1.0][0]) and not torch.allclose(seen[0.25][0], seen[0.0][0])
    plain = load_model(str(TINY / "instruct"), "float32")
    assert torch.equal(seen[0.0][0], logits(plain, hf.tokenizer, TEXTS[:1])[0])


def test_adapters_beyond_keep_are_evicted_and_reload_the_same(adapters):
    hf = HFServer(str(TINY / "instruct"), "float32", keep=2)
    first = None
    for name in ("plain", "rslora", "instruct-sft", "plain"):
        with hf.serve(Candidate(str(adapters[name]), 1.0)) as served:
            out = logits(served.model, served.tokenizer, TEXTS[:1])[0]
            first = first if first is not None else out
        assert len(hf.loaded) <= 2
    assert torch.allclose(out, first, atol=1e-6)


# ---------------------------------------------------------------------------------------------- the vLLM boundary


class FakeLLM:
    """Records what gift hands vllm.LLM and generate(); completes each request with a fixed text."""
    made: list[dict] = []
    calls: list[dict] = []

    def __init__(self, **kwargs):
        FakeLLM.made.append(kwargs)

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        FakeLLM.calls.append({"prompts": prompts, "params": params, "lora": lora_request})
        out = SimpleNamespace(text=" The answer is 7. ", finish_reason="stop")
        return [SimpleNamespace(outputs=[out]) for _ in prompts]


class FakeParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FakeLoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


@pytest.fixture
def fake_vllm(monkeypatch):
    FakeLLM.made, FakeLLM.calls = [], []
    vllm, lora, request = ModuleType("vllm"), ModuleType("vllm.lora"), ModuleType("vllm.lora.request")
    vllm.LLM, vllm.SamplingParams, request.LoRARequest = FakeLLM, FakeParams, FakeLoRARequest
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return FakeLLM


def settings(**kw) -> EvalConfig:
    return EvalConfig(model="-", bench=["-"], out="-", backend="vllm", **kw)


def test_one_engine_serves_every_candidate_with_lora_alpha_scaled(fake_vllm, adapters, tmp_path):
    server = VLLMServer(str(TINY / "instruct"), settings(gpu_memory_utilization=0.8, max_model_len=512,
                                                         tensor_parallel_size=2, dtype="bfloat16", seed=3), 4,
                        tmp_path / "served")
    bench = from_spec(DEV, 5)
    for i, (kind, scale) in enumerate([("plain", 0.25), ("plain", 1.0), ("rslora", 0.5), (None, 0.0)]):
        candidate = Candidate(str(adapters[kind]) if kind else None, scale)
        with server.serve(candidate) as served:
            evaluate(EvalConfig(model=served.label, bench=["dev"], out=str(tmp_path / f"e{i}"), backend="vllm",
                                samples=3, temperature=1.0, top_p=1.0, max_new_tokens=32, seed=5), [bench],
                     quiet=True, served=served)
    assert len(fake_vllm.made) == 1  # one engine for every candidate
    made = fake_vllm.made[0]
    assert made["enable_lora"] and made["max_lora_rank"] == 8 and made["max_loras"] == 1
    assert (made["gpu_memory_utilization"], made["max_model_len"], made["tensor_parallel_size"], made["dtype"]) == \
        (0.8, 512, 2, "bfloat16")
    assert made["generation_config"] == "vllm"  # the model's generation_config.json is no request's default
    loras = [c["lora"] for c in fake_vllm.calls]
    assert loras[-2:] == [None, None]  # λ 0: the instruct model, greedy and sampled calls alike
    configs = [json.loads((Path(r.lora_path) / "adapter_config.json").read_text()) for r in loras[:-2]]
    plain = json.loads((adapters["plain"] / "adapter_config.json").read_text())
    assert [c["lora_alpha"] for c in configs] == [plain["lora_alpha"] * 0.25] * 2 + [plain["lora_alpha"]] * 2 + [4.0] * 2
    assert configs[-1]["use_rslora"]
    ids = [r.lora_int_id for r in loras[:-2]]
    assert ids == [1, 1, 2, 2, 3, 3]  # one id per (adapter, λ), positive
    weights = Path(loras[0].lora_path) / "adapter_model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (adapters["plain"] / "adapter_model.safetensors").resolve()


def test_vllm_requests_match_the_hf_path(fake_vllm, tmp_path):
    """Token ids without a second BOS, the HF path's stop set, one request per sample with its own seed."""
    from gift.generate import row_seed, stop_token_ids

    server = VLLMServer(str(TINY / "instruct"), settings(), None, tmp_path / "served")
    assert "enable_lora" not in fake_vllm.made[0]
    bench = from_spec(DEV, 4)
    with server.serve(Candidate()) as served:
        evaluate(EvalConfig(model=served.label, bench=["dev"], out=str(tmp_path / "e"), backend="vllm", samples=3,
                            temperature=1.0, top_p=1.0, max_new_tokens=16, seed=5), [bench], quiet=True, served=served)
    greedy, sampled = fake_vllm.calls
    tok = load_tokenizer(str(TINY / "instruct"))
    prompts = render_prompts(tok, bench.problems, None)
    assert [p["prompt_token_ids"] for p in greedy["prompts"]] == tok(prompts, add_special_tokens=False)["input_ids"]
    stops = stop_token_ids(tok, load_model(str(TINY / "instruct"), "float32"))
    assert all(p.stop_token_ids == stops and p.temperature == 0 and p.seed is None for p in greedy["params"])
    assert len(sampled["prompts"]) == 4 * 3 and all(p.n == 1 for p in sampled["params"])
    seeds = [p.seed for p in sampled["params"]]
    assert seeds == [row_seed(5, prompts[i], s) for i in range(4) for s in range(3)] and len(set(seeds)) == 12
    results = json.loads((tmp_path / "e" / "results.json").read_text())["benchmarks"]["dev"]
    assert results["samples"] == 3


def test_llama3_prompts_reach_vllm_with_one_bos(fake_vllm, layout_pair, tmp_path):
    shared_file("vocab/ggml-vocab-llama-bpe.gguf")
    _, instruct = layout_pair("llama3")
    server = VLLMServer(str(instruct), settings(), None, tmp_path / "served")
    tok = server.tokenizer
    with server.serve(Candidate()) as served:
        served.engine.generate(["x"], 1, 0.0, 1.0, 4, 0)
        prompt = render_prompts(tok, from_spec(DEV, 2).problems, None)
        served.engine.generate(prompt, 1, 0.0, 1.0, 4, 0)
    ids = fake_vllm.calls[-1]["prompts"][0]["prompt_token_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.convert_tokens_to_ids("<|eot_id|>") in fake_vllm.calls[-1]["params"][0].stop_token_ids


def test_vllm_refusals_are_one_line(fake_vllm, adapters, tmp_path):
    with pytest.raises(GiftError, match="--choice-mode loglik scores options with the HF model"):
        settings(choice_mode="loglik")
    patterned = tmp_path / "patterned"
    patterned.mkdir()
    config = json.loads((adapters["plain"] / "adapter_config.json").read_text())
    (patterned / "adapter_config.json").write_text(json.dumps({**config, "alpha_pattern": {"q_proj": 32}}))
    assert "alpha_pattern" in unservable(patterned, "vllm") and unservable(patterned, "hf") is None
    assert unservable(adapters["plain"], "vllm") is None
