"""Candidates served, not written: one loaded instruct model evaluates every adapter at every merge scale λ.

A LoRA layer applied at run time with scaling λ·α/r computes x·(W + λ·(α/r)·B·A)ᵀ, the merged layer, so a candidate
(adapter, λ) is evaluated without a merged copy on disk (lm-evaluation-harness's `peft=` and `lora_local_path`,
LLaMA-Factory's vllm_infer do the same). On the HF backend one PeftModel wraps the instruct model, each adapter is
loaded once (the few last used stay) and its scale set per candidate; λ 0 switches adapters off. On vLLM one engine
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
from .merge import unsupported_feature
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
    """The instruct model loaded once; adapters loaded into one PeftModel over it, `keep` of them at a time."""

    def __init__(self, instruct: str, dtype: str = "auto", trust_pickle: bool = False, keep: int = 4):
        self.instruct, self.keep = instruct, keep
        self.tokenizer = load_tokenizer(instruct)
        self.model = load_model(instruct, dtype, trust_pickle)
        if torch.cuda.is_available():
            self.model.cuda()
        self.peft: Any = None
        self.loaded: OrderedDict[str, str] = OrderedDict()  # adapter path -> adapter name, least recently used first
        self.count = 0

    def _activate(self, adapter: str, scale: float) -> Any:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        name = self.loaded.get(adapter)
        if name is None:
            self.count += 1
            name = f"adapter{self.count}"
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
            else:
                if len(self.loaded) >= self.keep:
                    _, oldest = self.loaded.popitem(last=False)
                    self.peft.delete_adapter(oldest)
                self.peft.load_adapter(adapter, adapter_name=name)
            self.loaded[adapter] = name
        self.loaded.move_to_end(adapter)
        self.peft.set_adapter(name)
        for module in self.peft.modules():  # PEFT's set_scale: scaling = λ·α/r (α/√r for rsLoRA), per module pattern
            if isinstance(module, LoraLayer):
                module.set_scale(name, scale)
        return self.peft.eval()

    @contextmanager
    def serve(self, candidate: Candidate) -> Iterator[Served]:
        label = candidate.label(self.instruct)
        if candidate.plain and self.peft is not None:
            with self.peft.disable_adapter():  # the LoRA layers return their base layer's output exactly
                yield Served(label, self.tokenizer, model=self.peft)
        elif candidate.plain:
            yield Served(label, self.tokenizer, model=self.model)
        else:
            yield Served(label, self.tokenizer, model=self._activate(candidate.adapter, candidate.scale))


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
