"""Candidates served, not written: one loaded instruct model evaluates every adapter at every merge scale λ.

A LoRA layer applied at run time with scaling λ·α/r computes x·(W + λ·(α/r)·B·A)ᵀ, the merged layer, so a candidate
(adapter, λ) is evaluated without a merged copy on disk (lm-evaluation-harness's `peft=` and `lora_local_path`,
LLaMA-Factory's vllm_infer do the same). On the HF backend the loaded instruct model takes each candidate's merge in
memory (exact: the merge's own arithmetic, W_I kept aside and restored); λ 0 is W_I itself. On vLLM one engine
with LoRA enabled serves every candidate as a LoRARequest; λ is written as lora_alpha·λ in a small per-λ directory
whose weights file links the adapter's (vLLM reads one scale, lora_alpha/r, from adapter_config.json).
"""
from __future__ import annotations

import gc
import json
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors import safe_open

from .errors import GiftError
from .generate import VLLMEngine, stop_token_ids
from .merge import merged_weight, read_adapter, unsupported_feature
from .model import load_model, load_tokenizer, source_kwargs


@dataclass(frozen=True)
class Candidate:
    """The instruct model with `adapter` applied at merge scale λ; no adapter, or λ 0, is the instruct model."""
    adapter: str | None = None
    scale: float = 0.0

    @property
    def plain(self) -> bool:
        return self.adapter is None or self.scale == 0

    def label(self, instruct: str) -> str:
        return instruct if self.plain else f"{instruct} + {self.adapter} at λ {self.scale:g} (served)"


@dataclass
class Served:
    """What evaluation needs of one candidate: the tokenizer, and an HF model or a vLLM engine with its LoRA request."""
    label: str
    tokenizer: Any
    model: Any = None
    engine: VLLMEngine | None = None
    lora: Any = None


def adapter_config(adapter: str | Path) -> dict[str, Any]:
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise GiftError(f"{adapter}: no adapter_config.json; expected a PEFT adapter directory from gift train")
    return json.loads(path.read_text())


def unservable(adapter: str | Path, backend: str) -> str | None:
    """Why vLLM cannot apply this adapter exactly as PEFT does (then the candidate is merged instead), or None.
    The HF backend serves what gift merge merges: PEFT's forward is the reference the merge is checked against. An
    adapter gift merge refuses (gift.merge.unsupported_feature) is left to the merge, which refuses it in one line."""
    if backend != "vllm":
        return None
    config = adapter_config(adapter)
    weights, names = Path(adapter) / "adapter_model.safetensors", []
    if weights.is_file():
        with safe_open(weights, framework="pt") as f:
            names = list(f.keys())
    feature = unsupported_feature(config, dict.fromkeys(names))  # it reads the tensors' names only
    if feature:
        return f"vLLM does not serve {feature} exactly"
    if config.get("alpha_pattern") or config.get("rank_pattern"):  # vllm/lora/peft_helper.py has no pattern fields
        return "vLLM does not serve per-module alpha_pattern / rank_pattern exactly (it reads one lora_alpha/r)"
    return None


def release_gpu() -> None:
    """Give cached GPU memory back before an engine measures what is free (annotation and training ran in this
    process; vLLM's start-up refuses when less than gpu_memory_utilization of the card is free)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class HFServer:
    """The instruct model loaded once; a candidate's adapter merged into it in memory, W_I + λ·(α/r)·B·A computed in
    float32 from W_I kept aside (on the CPU) and cast to the model's dtype: the weights gift merge writes, to the bit
    in float32, and those an evaluation of its merged copy loads in any dtype the instruct model is stored in or
    wider (an fp32 checkpoint served in bf16 rounds W_I before the sum, at most one bf16 step apart from rounding
    the merged fp32 copy). A runtime LoRA layer (PeftModel) is the same function, but adds two rank-r products to
    every adapted layer: 1.5× the forward time of the bundled pair's model at rank 32 (BENCHMARKS.md). Adapters are
    read once, `keep` of them at a time."""

    def __init__(self, instruct: str, dtype: str = "auto", trust_pickle: bool = False, keep: int = 4):
        self.instruct, self.keep, self.trust_pickle = instruct, keep, trust_pickle
        self.tokenizer = load_tokenizer(instruct)
        self.model = load_model(instruct, dtype, trust_pickle).eval()
        if torch.cuda.is_available():
            self.model.cuda()
        self.loaded: OrderedDict[str, dict[str, Any]] = OrderedDict()  # adapter -> its deltas, least recent first
        self.original: dict[str, torch.Tensor] = {}  # W_I of every weight an adapter has changed, on the CPU
        self.active: Candidate = Candidate()

    def _deltas(self, adapter: str) -> dict[str, Any]:
        if adapter not in self.loaded:
            if len(self.loaded) >= self.keep:
                self.loaded.popitem(last=False)
            self.loaded[adapter] = read_adapter(Path(adapter), self.trust_pickle)[0]
        self.loaded.move_to_end(adapter)
        return self.loaded[adapter]

    @torch.no_grad()
    def _apply(self, candidate: Candidate) -> None:
        """Make the loaded weights the candidate's: W_I + λ·ΔW where it has a delta, W_I put back where an earlier
        candidate changed a weight this one does not."""
        if candidate == self.active:
            return
        deltas = {} if candidate.plain else self._deltas(candidate.adapter)
        for name, w in self.original.items():
            if name not in deltas:
                self.model.get_parameter(name).copy_(w)
        for name, delta in deltas.items():
            p = self.model.get_parameter(name)
            w = self.original.setdefault(name, p.detach().to("cpu", copy=True))
            p.copy_(merged_weight(w, delta, candidate.scale, name))
        self.active = candidate

    @contextmanager
    def serve(self, candidate: Candidate) -> Iterator[Served]:
        self._apply(candidate)
        yield Served(candidate.label(self.instruct), self.tokenizer, model=self.model)


class VLLMServer:
    """One vLLM engine over the instruct model; every candidate a LoRARequest, λ in a per-λ adapter directory."""

    def __init__(self, instruct: str, settings: Any, lora_rank: int | None, root: Path):
        self.instruct, self.root = instruct, root
        self.tokenizer = load_tokenizer(instruct)
        release_gpu()
        self.engine = VLLMEngine(instruct, self.tokenizer, vllm_stops(instruct, self.tokenizer),
                                 settings.dtype, settings.seed, settings.gpu_memory_utilization,
                                 settings.max_model_len, settings.tensor_parallel_size, lora_rank)
        self.ids: dict[str, int] = {}

    def request(self, candidate: Candidate) -> Any:
        """A LoRARequest for the adapter at λ: a directory holding adapter_config.json with lora_alpha·λ (and its
        alpha_pattern likewise) and a link to the adapter's weights; no weights are copied."""
        from vllm.lora.request import LoRARequest

        source = Path(candidate.adapter).resolve()
        config = adapter_config(source)
        path = self.root / f"{source.name}-x{candidate.scale:g}"
        if not (path / "adapter_config.json").is_file():
            path.mkdir(parents=True, exist_ok=True)
            scaled = {**config, "lora_alpha": config["lora_alpha"] * candidate.scale}
            weights = source / "adapter_model.safetensors"
            if not weights.is_file():
                raise GiftError(f"{source}: vLLM serves adapters stored as adapter_model.safetensors")
            link = path / weights.name
            if not link.is_symlink():
                link.symlink_to(weights)
            (path / "adapter_config.json").write_text(json.dumps(scaled, indent=2) + "\n")
        key = str(path)
        self.ids.setdefault(key, len(self.ids) + 1)  # vLLM's LoRA ids are positive and name one adapter each
        return LoRARequest(path.name, self.ids[key], key)

    @contextmanager
    def serve(self, candidate: Candidate) -> Iterator[Served]:
        lora = None if candidate.plain else self.request(candidate)
        yield Served(candidate.label(self.instruct), self.tokenizer, engine=self.engine, lora=lora)


def vllm_stops(model: str, tokenizer: Any) -> list[int]:
    """The HF path's stop set for a model vLLM loads: the tokenizer's, the template's and generation_config.json's."""
    from transformers import GenerationConfig

    path, kwargs = source_kwargs(model)
    try:
        config = GenerationConfig.from_pretrained(path, **kwargs)
    except OSError:  # no generation_config.json: the tokenizer's and the template's stops
        config = None
    return stop_token_ids(tokenizer, SimpleNamespace(generation_config=config))


def server(instruct: str, settings: Any, lora_rank: int | None, root: Path) -> HFServer | VLLMServer:
    """The server of a run's backend (settings: its EvalConfig)."""
    if settings.backend == "vllm":
        return VLLMServer(instruct, settings, lora_rank, root)
    return HFServer(instruct, settings.dtype, settings.trust_pickle)
