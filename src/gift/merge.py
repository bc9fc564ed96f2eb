"""gift merge: transfer a LoRA adapter onto the instruct model, W' = W + λ·(α/r)·B·A.

Compatibility is checked before anything is written. A safetensors instruct model is merged in place
of a copy: each shard file is copied as it is and only the adapted tensors' bytes are overwritten (a
merged tensor keeps its shape and dtype, hence its byte range), so the model is never instantiated and
peak memory is about one tensor. GGUF or trusted pickled weights are loaded, merged in memory and saved
as safetensors. Output: a Hugging Face model directory
with the instruct tokenizer and chat template, renamed into place only when complete.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from . import __version__
from .atomic import atomic_dir, check_out_dir
from .config import MergeConfig, to_dict
from .errors import GiftError
from .model import (
    check_weights_safe,
    load_config,
    load_model,
    load_tokenizer,
    model_shape,
    same_vocab,
    shape_mismatch,
    special_token_notes,
    special_tokens,
    vocab_fingerprint,
    weight_files,
)
from .train import TRAIN_META

# init_lora_weights values that leave the base weights as they were, so the trained B·A is the whole change
# (True: B = 0; False and "gaussian": random A and/or B; "orthogonal" and "eva": A and B set, base untouched, as
# PEFT's lora/layer.py and lora/eva.py do); every other value, including ones PEFT adds later, is refused
EXACT_INITS = (True, False, "gaussian", "orthogonal", "eva")
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf"}
LORA_A = ".lora_A.weight"


class Delta:
    """One adapted module: its low-rank factors and the factor λ·α/r they are scaled by."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, factor: float):
        self.a, self.b, self.factor = a, b, factor

    def apply(self, w: torch.Tensor, name: str) -> torch.Tensor:
        if tuple(w.shape) != (self.b.shape[0], self.a.shape[1]):
            raise GiftError(f"{name}: instruct weight has shape {tuple(w.shape)}, the adapter expects "
                            f"{(self.b.shape[0], self.a.shape[1])}; the adapter was trained on another model shape")
        return (w.float() + self.factor * (self.b.float() @ self.a.float())).to(w.dtype)


def read_adapter(path: Path, scale: float, trust_pickle: bool) -> tuple[dict[str, Delta], dict[str, Any]]:
    """{instruct weight name: Delta} and gift_train.json (empty for adapters not made by gift train)."""
    cfg_path, st_path = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_path.is_file():
        raise GiftError(f"{path}: no adapter_config.json; expected a PEFT adapter directory from gift train")
    if st_path.is_file():
        tensors = load_file(st_path)
    elif (path / "adapter_model.bin").is_file() and trust_pickle:
        tensors = torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True)
    elif (path / "adapter_model.bin").is_file():
        raise GiftError(f"{path}: adapter is stored only as a pickle (adapter_model.bin); convert it to "
                        f"safetensors or pass --trust-pickle if you trust the file")
    else:
        raise GiftError(f"{path}: no adapter_model.safetensors")
    config = json.loads(cfg_path.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise GiftError(f"{path}: peft_type {config['peft_type']} is not LoRA")
    unsupported = unsupported_feature(config, tensors)
    if unsupported:
        raise GiftError(f"{path}: the adapter uses {unsupported}, which gift merge does not merge exactly; merge it "
                        f"with PEFT (PeftModel.from_pretrained(instruct, adapter).merge_and_unload()) or train "
                        f"without it")
    deltas = {}
    for key in tensors:
        if not key.endswith(LORA_A):
            continue
        module = key[: -len(LORA_A)].removeprefix("base_model.model.")
        a, b = tensors[key], tensors[key.replace(".lora_A.", ".lora_B.")]
        r = a.shape[0]
        alpha = _pattern(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
        factor = scale * alpha / (math.sqrt(r) if config.get("use_rslora") else r)
        deltas[module + ".weight"] = Delta(a, b, factor)
    if not deltas:
        raise GiftError(f"{path}: adapter holds no LoRA weights")
    meta_path = path / TRAIN_META
    return deltas, json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def unsupported_feature(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str | None:
    """The first adapter feature that W + λ·(α/r)·B·A on linear weights does not reproduce, or None.

    gift merges only plain LoRA on linear layers; each of these changes what PEFT's merge computes (a
    magnitude vector, a bias, an embedding lookup, replaced modules, transposed weights), so merging without
    it would be silently wrong."""
    checks = [
        (config.get("use_dora"), "DoRA (use_dora)"),
        (config.get("lora_bias") or any(".lora_B.bias" in k for k in tensors), "a bias on lora_B (lora_bias)"),
        (config.get("bias", "none") != "none" or any(k.endswith(".bias") and "lora_" not in k for k in tensors),
         f"trained biases (bias={config.get('bias')!r})"),
        (any("lora_embedding_" in k for k in tensors), "LoRA on an embedding layer (lora_embedding_A/B)"),
        (config.get("modules_to_save") or any("modules_to_save" in k for k in tensors),
         f"fully trained modules (modules_to_save={config.get('modules_to_save')})"),
        (config.get("fan_in_fan_out"), "fan_in_fan_out (Conv1D layers)"),
        (any(k.endswith(".lora_magnitude_vector") or "lora_magnitude_vector" in k for k in tensors), "DoRA magnitudes"),
        (config.get("init_lora_weights", True) not in EXACT_INITS,
         f"init_lora_weights={config.get('init_lora_weights')!r}, which rewrote the base weights it trained on (PiSSA, "
         f"OLoRA, CorDA, LoftQ and LoRA-GA subtract their initial B·A; MiCA has a forward of its own), so adding B·A "
         f"to the instruct weights would count that part twice; convert it to plain LoRA with PEFT's "
         f"path_initial_model_for_weight_conversion"),
    ]
    return next((name for flagged, name in checks if flagged), None)


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's per-module overrides: the first pattern that matches the end of the module name, matched as PEFT's
    get_pattern_key does (the pattern grouped, so `q_proj|v_proj` is one alternative, not two halves)."""
    for pat, value in patterns.items():
        if re.match(rf"(.*\.)?({pat})$", module):
            return value
    return default


def check_compatible(cfg: MergeConfig, train_meta: dict[str, Any]) -> None:
    """Architecture, shapes, vocabulary size and tokenizer of the instruct model against the adapter's."""
    instruct_shape = model_shape(load_config(cfg.instruct))
    if "model_shape" in train_meta:
        problem = shape_mismatch(train_meta["model_shape"], instruct_shape, "the adapter's model", "the instruct model")
        if problem:
            raise GiftError(f"{cfg.adapter} cannot merge into {cfg.instruct}: {problem}")
    if "vocab_fingerprint" in train_meta:
        tokenizer = load_tokenizer(cfg.instruct)
        if not same_vocab(train_meta["vocab_fingerprint"], tokenizer):
            raise GiftError(f"{cfg.adapter} cannot merge into {cfg.instruct}: the tokenizers differ "
                            f"({train_meta['vocab_fingerprint']} vs {vocab_fingerprint(tokenizer)}), so token ids "
                            f"would mean other text")
        notes = special_token_notes(train_meta.get("special_tokens", {}), special_tokens(tokenizer), "trained model",
                                    "instruct")
        if train_meta.get("special_tokens") and notes:
            print(f"gift: note: same token ids, special roles differ ({'; '.join(notes)}); the merged model keeps the "
                  f"instruct tokenizer, chat template and generation config", file=sys.stderr)


def safetensors_layout(path: Path) -> tuple[dict[str, Any], int]:
    """(header, offset of the data section) of a safetensors file: 8-byte length, JSON header, raw bytes."""
    with path.open("rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def merge_shards(shards: list[Path], deltas: dict[str, Delta], out: Path) -> None:
    """Copy each shard and overwrite the adapted tensors in place; every adapted weight must exist in some
    shard before anything is written."""
    src = shards[0].parent
    layouts = {shard: safetensors_layout(shard) for shard in shards}
    missing = sorted(set(deltas) - {name for header, _ in layouts.values() for name in header})
    if missing:
        raise GiftError(f"the adapter targets {missing[0].removesuffix('.weight')}, which the instruct model "
                        f"does not have; was it trained on another architecture?")
    for shard, (header, data_start) in layouts.items():
        shutil.copyfile(shard, out / shard.name)
        with safe_open(shard, framework="pt") as f, (out / shard.name).open("r+b") as dst:
            for name in sorted(header.keys() & deltas.keys()):
                merged = deltas[name].apply(f.get_tensor(name), name).contiguous()
                begin, end = header[name]["data_offsets"]
                raw = merged.view(torch.uint8).numpy().tobytes()  # safetensors is little-endian, as torch on x86/ARM
                assert len(raw) == end - begin, name
                dst.seek(data_start + begin)
                dst.write(raw)
    for f in src.iterdir():
        if f.is_file() and f.suffix not in WEIGHT_SUFFIXES and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)


def merge_in_memory(cfg: MergeConfig, deltas: dict[str, Delta], out: Path) -> None:
    """For instruct weights that are not safetensors (GGUF, trusted pickles): load, merge, save."""
    model = load_model(cfg.instruct, "auto" if cfg.dtype == "auto" else cfg.dtype, cfg.trust_pickle)
    state = model.state_dict()
    missing = sorted(set(deltas) - set(state))
    if missing:
        raise GiftError(f"the adapter targets {missing[0].removesuffix('.weight')}, which the instruct model "
                        f"does not have; was it trained on another architecture?")
    with torch.no_grad():
        for name, delta in deltas.items():
            state[name].copy_(delta.apply(state[name], name))
    model.save_pretrained(out)
    load_tokenizer(cfg.instruct).save_pretrained(out)


def model_card(cfg: MergeConfig, train_meta: dict[str, Any], modules: int) -> str:
    """README.md of the merged model, as PEFT writes one beside an adapter: how it was made, and the pair check
    (run here where the base the adapter was trained on is at hand)."""
    train = train_meta.get("config", {})
    base = train.get("model")
    rows = [("base (adapter trained on)", base), ("instruct (merged into)", cfg.instruct), ("adapter", cfg.adapter),
            ("method", train.get("method")), ("γ", train.get("gamma") if train.get("method") == "gift" else None),
            ("λ (merge scale)", cfg.scale), ("LoRA r, α", f"{train.get('rank')}, {train.get('alpha')}" if train else None),
            ("teacher of the annotation", train_meta.get("teacher")),
            ("training data sha256", train_meta.get("data_sha256")),
            ("steps", train_meta.get("steps")), ("modules merged", modules), ("gift", __version__)]
    config = Path(cfg.adapter) / "adapter_config.json"
    rslora = config.is_file() and json.loads(config.read_text()).get("use_rslora", False)  # merged with α/√r
    lines = ["---", f"base_model: {cfg.instruct}", "tags: [gift, lora, merge]", "---", "", "# Merged with gift", "",
             f"W' = W_instruct + λ·(α/{'√r' if rslora else 'r'})·B·A{' (rsLoRA)' if rslora else ''}, the adapter trained "
             f"on the base model (GIFT: Ruan et al., ACL 2026).", "",
             "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows if v is not None), ""]
    if base and Path(base).exists():
        from .config import CheckConfig
        from .diagnose import check_pair

        try:
            found = check_pair(CheckConfig(base=base, instruct=cfg.instruct, trust_pickle=cfg.trust_pickle), quiet=True)
            lines += ["## Pair check (gift check-pair)", "", "| level | topic | finding |", "|---|---|---|"]
            lines += [f"| {f['level']} | {f['topic']} | {f['message']} |" for f in found["findings"]]
        except Exception as e:  # noqa: BLE001 - the card's check is a report: it must never cost the merged model
            lines += ["## Pair check (gift check-pair)", "", f"ERROR: {type(e).__name__}: {e}"]
    else:
        lines.append("The base model was not at hand when merging: run `gift check-pair --base BASE --instruct INSTRUCT`.")
    return "\n".join(lines) + "\n"


def merge(cfg: MergeConfig) -> Path:
    out = check_out_dir(cfg.out, cfg.overwrite)
    deltas, train_meta = read_adapter(Path(cfg.adapter), cfg.scale, cfg.trust_pickle)
    check_weights_safe(cfg.instruct, cfg.trust_pickle)
    check_compatible(cfg, train_meta)
    shards = weight_files(cfg.instruct)
    with atomic_dir(out, cfg.overwrite) as tmp:
        if shards and cfg.dtype == "auto":
            merge_shards(shards, deltas, tmp)
        else:
            merge_in_memory(cfg, deltas, tmp)
        (tmp / "gift_merge.json").write_text(json.dumps({
            "gift_version": __version__, "config": to_dict(cfg), "modules": len(deltas),
            "adapter_training": train_meta.get("config", {})}, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(cfg, train_meta, len(deltas)))
    print(f"merged {len(deltas)} modules (scale {cfg.scale}) -> {out}")
    return out
