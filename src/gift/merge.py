"""gift merge: transfer a LoRA adapter onto the instruct model, W' = W + λ·(α/r)·B·A, or (--combine) combine the
chat vector W_I − W_B and the adapter as task vectors over the base model with TIES or DARE (gift.combine).

Every merged tensor is computed in float32 and cast to the saved dtype once; the share of the change that survives
the cast is measured per family (gift.combine.Survival), and a parity check compares the merged model's logits with
PeftModel(instruct, adapter) at the same λ. Both go into gift_merge.json and the model card.
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
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from . import __version__
from .atomic import atomic_dir, check_out_dir
from .combine import Survival, combine, tensor_seed
from .config import MergeConfig, to_dict
from .diagnose import Weight, distinct_tensors
from .diagnose import tensors as stored_weights
from .errors import GiftError
from .model import (
    check_weights_safe,
    load_config,
    load_model,
    load_tokenizer,
    model_shape,
    pick_dtype,
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
    """One adapted module: its low-rank factors and their scaling α/r (α/√r for rsLoRA); λ is applied by the merge."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, factor: float):
        self.a, self.b, self.factor = a, b, factor

    def value(self, shape: tuple[int, ...], name: str) -> torch.Tensor:
        """(α/r)·B·A in float32, after checking it fits the weight it is added to."""
        if tuple(shape) != (self.b.shape[0], self.a.shape[1]):
            raise GiftError(f"{name}: instruct weight has shape {tuple(shape)}, the adapter expects "
                            f"{(self.b.shape[0], self.a.shape[1])}; the adapter was trained on another model shape")
        return self.factor * (self.b.float() @ self.a.float())


def merged_weight(instruct: torch.Tensor, delta: Delta, scale: float, name: str) -> torch.Tensor:
    """W_I + λ·(α/r)·B·A in float32: the one place the transfer's arithmetic is written (gift merge writes it, gift
    run's served candidates load it)."""
    return instruct.float() + scale * delta.value(instruct.shape, name)


def read_adapter(path: Path, trust_pickle: bool) -> tuple[dict[str, Delta], dict[str, Any]]:
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
        factor = alpha / (math.sqrt(r) if config.get("use_rslora") else r)
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
        (config.get("trainable_token_indices") or any("trainable_tokens" in k for k in tensors),
         "trainable tokens (trainable_token_indices: new rows of the embedding, not a low-rank change)"),
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


class Merger:
    """The float32 value of each merged tensor: W_I + λ·ΔW, or (--combine) the TIES/DARE combination over base; and the
    rounding account of what the saved dtype keeps of it."""

    def __init__(self, cfg: MergeConfig, deltas: dict[str, Delta], base: dict[str, Weight] | None):
        self.cfg, self.deltas, self.base, self.survival = cfg, deltas, base, Survival()
        self.dtypes: Counter[torch.dtype] = Counter()  # of the tensors written

    def names(self, present: set[str]) -> set[str]:
        """The tensors this merge writes: the adapted ones, or with --combine every one base and instruct share."""
        missing = sorted(set(self.deltas) - present)
        if missing:
            raise GiftError(f"the adapter targets {missing[0].removesuffix('.weight')}, which the instruct model "
                            f"does not have; was it trained on another architecture?")
        if self.base is None:
            return set(self.deltas)
        only = sorted(present - set(self.base))
        if only:
            raise GiftError(f"--combine {self.cfg.combine}: the instruct model's {only[0]} is not in the base model; "
                            f"task vectors need the same tensors in both")
        return present

    def record(self, name: str, instruct: torch.Tensor, merged: torch.Tensor, saved: torch.Tensor) -> None:
        """The rounding account of one tensor, from the tensor as written."""
        self.survival.add(name, instruct, merged, saved)
        self.dtypes[saved.dtype] += 1

    def value(self, name: str, instruct: torch.Tensor) -> torch.Tensor:
        """The merged tensor in float32."""
        delta = self.deltas.get(name)
        if self.base is None:
            merged = merged_weight(instruct, delta, self.cfg.scale, name)
        else:
            weight = self.base[name]
            if tuple(weight.shape) != tuple(instruct.shape):
                raise GiftError(f"--combine {self.cfg.combine}: {name} has shape {tuple(instruct.shape)} in the "
                                f"instruct model and {tuple(weight.shape)} in the base model")
            base = weight.rows(0, weight.shape[0] if weight.shape else 1).reshape(weight.shape).float()
            task = delta.value(instruct.shape, name) if delta else torch.zeros_like(base)
            dare = self.cfg.combine.startswith("dare")
            g = torch.Generator().manual_seed(tensor_seed(self.cfg.seed, name)) if dare else None
            merged = combine(base, instruct.float() - base, task, self.cfg.scale, self.cfg.combine, self.cfg.density,
                             self.cfg.normalize, g)
        return merged


def merge_shards(shards: list[Path], merger: Merger, out: Path) -> None:
    """Copy each shard and overwrite the merged tensors in place (same shape and dtype, so the same byte range);
    every adapted weight must exist in some shard before anything is written."""
    src = shards[0].parent
    layouts = {shard: safetensors_layout(shard) for shard in shards}
    names = merger.names({name for header, _ in layouts.values() for name in header if name != "__metadata__"})
    for shard, (header, data_start) in layouts.items():
        shutil.copyfile(shard, out / shard.name)
        with safe_open(shard, framework="pt") as f, (out / shard.name).open("r+b") as dst:
            for name in sorted(header.keys() & names):
                stored = f.get_tensor(name)
                value = merger.value(name, stored)
                merged = value.to(stored.dtype).contiguous()
                merger.record(name, stored, value, merged)  # these bytes are what the file holds
                begin, end = header[name]["data_offsets"]
                raw = merged.view(torch.uint8).numpy().tobytes()  # safetensors is little-endian, as torch on x86/ARM
                assert len(raw) == end - begin, name
                dst.seek(data_start + begin)
                dst.write(raw)
    for f in src.iterdir():
        if f.is_file() and f.suffix not in WEIGHT_SUFFIXES and not f.name.startswith("."):
            shutil.copy2(f, out / f.name)


def saved_dtype(cfg: MergeConfig) -> torch.dtype:
    """--dtype, or with auto the instruct model's own (its config's torch_dtype; float32 where it names none)."""
    if cfg.dtype != "auto":
        return pick_dtype(cfg.dtype)
    config = load_config(cfg.instruct)
    named = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(named, str):
        named = getattr(torch, named, None)
    return named if isinstance(named, torch.dtype) else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def merge_in_memory(cfg: MergeConfig, merger: Merger, out: Path) -> None:
    """For instruct weights that are not safetensors (GGUF, trusted pickles) or a --dtype other than theirs: load in
    float32, merge, cast once, save; the rounding account is taken from the files written."""
    dtype = saved_dtype(cfg)
    model = load_model(cfg.instruct, "float32", cfg.trust_pickle)
    state = model.state_dict()
    with torch.no_grad():
        # every merged value first, from the instruct weights as loaded: a tied lm_head is the embedding tensor again,
        # and writing one before computing the other would merge the shared tensor twice
        names = merger.names(set(distinct_tensors(state)))
        merged = {name: merger.value(name, state[name]) for name in names}
        instruct = {name: state[name].clone() for name in names}
        model.to(dtype)
        # the cast made new tensors: write into the ones the model now holds (the state dict taken before the cast
        # belongs to no model any more, and copying into it would save the instruct weights unmerged)
        live = model.state_dict()
        for name, value in merged.items():
            live[name].copy_(value)
    model.save_pretrained(out)
    load_tokenizer(cfg.instruct).save_pretrained(out)
    saved = {}
    for shard in weight_files(str(out)) or []:
        saved.update(load_file(shard))
    for name in sorted(names):
        if name not in saved:
            raise GiftError(f"{name} is not in the saved model; nothing was written")
        merger.record(name, instruct[name], merged[name], saved[name])


SURVIVAL_WARNING = 0.95  # below this surviving share (or above 1 − it in relative error) the merge warns
PARITY_PROMPTS = ("Question: What is 17 + 25? Answer:", "The capital of France is", "def fibonacci(n):",
                  "Explain why the sky is blue.")
PARITY_TOLERANCE = 1e-4  # relative, for a float32 merge; a bf16/fp16 one is judged against the unmerged model


@torch.no_grad()
def parity(cfg: MergeConfig, merged_dir: Path, dtype: torch.dtype) -> dict[str, Any]:
    """max |logits_merged − logits_peft| / max |logits_peft| on a few prompts, where logits_peft come from
    PeftModel(instruct, adapter) with its scale set to λ, and the same for the unmerged instruct model (the adapter
    switched off). Every model runs in float32 on its saved weights upcast (exact), so in bf16/fp16 the deviation is
    the rounding of the merged weights alone and can be set against the change the merge was to make (one model in
    memory at a time)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    tok = load_tokenizer(cfg.instruct)
    rows = [tok(p, return_tensors="pt").input_ids for p in PARITY_PROMPTS[:cfg.parity_rows]]
    peft = PeftModel.from_pretrained(load_model(cfg.instruct, "float32", cfg.trust_pickle), cfg.adapter)
    for module in peft.modules():
        if isinstance(module, LoraLayer):
            module.set_scale("default", cfg.scale)
    want = [peft(input_ids=r).logits for r in rows]
    with peft.disable_adapter():
        plain = [peft(input_ids=r).logits for r in rows]
    del peft
    model = load_model(str(merged_dir), "float32")
    got = [model(input_ids=r).logits for r in rows]
    scale = max(max(float(w.abs().max()) for w in want), 1e-12)
    deviation = max(float((g - w).abs().max()) for g, w in zip(got, want)) / scale
    unmerged = max(float((p - w).abs().max()) for p, w in zip(plain, want)) / scale
    agree = sum(int((g.argmax(-1) == w.argmax(-1)).sum()) for g, w in zip(got, want)) / sum(r.numel() for r in rows)
    return {"rows": len(rows), "dtype": dtype_name(dtype), "deviation": deviation, "unmerged_deviation": unmerged,
            "top1_agreement": agree, "tolerance": PARITY_TOLERANCE if dtype == torch.float32 else None}


def parity_failure(check: dict[str, Any], survival: dict[str, float]) -> str | None:
    """Why the merged model is not the adapter merged, or None. float32: within PARITY_TOLERANCE. bf16/fp16: where
    the cast kept the change cleanly (surviving share ≥ SURVIVAL_WARNING, rounding error ≤ 1 − it: otherwise the
    merge warns that rounding decides the model), the merged model must sit at most half as far
    from PeftModel(instruct, adapter) as the unmerged instruct model does (a merge that saved the instruct weights
    is as far as they are)."""
    if check["tolerance"] is not None:
        if check["deviation"] > check["tolerance"]:
            return f"by {check['deviation']:.2e} of their scale in float32 (tolerance {check['tolerance']:.0e})"
        return None
    clean = survival["kept"] >= SURVIVAL_WARNING and survival["error"] <= 1 - SURVIVAL_WARNING
    if clean and check["deviation"] > 0.5 * check["unmerged_deviation"]:
        return (f"by {check['deviation']:.2e} of their scale in {check['dtype']}, where the unmerged instruct model "
                f"differs by {check['unmerged_deviation']:.2e} (the merged model must be at most half as far)")
    return None


def model_card(cfg: MergeConfig, train_meta: dict[str, Any], record: dict[str, Any]) -> str:
    """README.md of the merged model, as PEFT writes one beside an adapter: how it was made, what rounding kept, the
    parity check, and the pair check (run here where the base the adapter was trained on is at hand)."""
    train = train_meta.get("config", {})
    base = cfg.base or train.get("model")
    combined = f"{cfg.combine}, density {cfg.density:g}" + (", normalized" if cfg.normalize else "") + \
        (f", seed {cfg.seed}" if cfg.combine.startswith("dare") else "")
    rows = [("base (adapter trained on)", base), ("instruct (merged into)", cfg.instruct), ("adapter", cfg.adapter),
            ("method", train.get("method")), ("γ", train.get("gamma") if train.get("method") == "gift" else None),
            ("λ (merge scale)", cfg.scale), ("combination", combined if cfg.combine != "linear" else None),
            ("LoRA r, α", f"{train.get('rank')}, {train.get('alpha')}" if train else None),
            ("teacher of the annotation", train_meta.get("teacher")),
            ("training data sha256", train_meta.get("data_sha256")),
            ("steps", train_meta.get("steps")), ("tensors merged", record["tensors"]), ("saved dtype", record["dtype"]),
            ("gift", __version__)]
    config = Path(cfg.adapter) / "adapter_config.json"
    rslora = config.is_file() and json.loads(config.read_text()).get("use_rslora", False)  # merged with α/√r
    formula = f"W' = W_instruct + λ·(α/{'√r' if rslora else 'r'})·B·A{' (rsLoRA)' if rslora else ''}"
    if cfg.combine != "linear":
        formula = (f"W' = W_base + {cfg.combine}(W_instruct − W_base with weight 1, (α/r)·B·A with weight λ), as "
                   f"mergekit's {cfg.combine}")
    lines = ["---", f"base_model: {cfg.instruct}", "tags: [gift, lora, merge]", "---", "", "# Merged with gift", "",
             f"{formula}, the adapter trained on the base model (GIFT: Ruan et al., ACL 2026).", "",
             "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows if v is not None), "",
             f"## What the saved dtype kept ({record['dtype']})", "",
             "Share of the merge's change to the instruct model that survives the cast (1 = all of it), and the "
             "cast's error relative to that change.", "",
             "| family | surviving share | relative error |", "|---|---|---|",
             *(f"| {f} | {v['kept']:.4f} | {v['error']:.2e} |" for f, v in record["survival"].items()), ""]
    check = record.get("parity")
    if check:
        lines += ["## Parity with PeftModel(instruct, adapter)", "",
                  f"On {check['rows']} prompts in {check['dtype']}: max |Δ logit| = {check['deviation']:.2e} of the "
                  f"logits' scale, top-1 agreement {check['top1_agreement']:.1%}.", ""]
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



def rounding_warning(survival: dict[str, dict[str, float]], dtype: str) -> str | None:
    """What the cast lost, where any family keeps less than SURVIVAL_WARNING of its change or gains a rounding error
    above 1 − it (then the saved model and PeftModel(instruct, adapter) can differ beyond rounding), else None."""
    lost = {f: v["kept"] for f, v in survival.items() if v["kept"] < SURVIVAL_WARNING}
    noisy = {f: v["error"] for f, v in survival.items() if v["error"] > 1 - SURVIVAL_WARNING}
    if not lost and not noisy:
        return None
    said = [f"keeps only {v:.1%} of the change in {f}" for f, v in lost.items()] + \
           [f"adds a rounding error of {v:.0%} of the change in {f}" for f, v in noisy.items() if f not in lost]
    return f"the cast to {dtype} {'; '.join(said)}; save in float32 (--dtype float32) to keep it"


def merge(cfg: MergeConfig) -> Path:
    out = check_out_dir(cfg.out, cfg.overwrite)
    deltas, train_meta = read_adapter(Path(cfg.adapter), cfg.trust_pickle)
    check_weights_safe(cfg.instruct, cfg.trust_pickle)
    check_compatible(cfg, train_meta)
    base = None
    if cfg.combine != "linear":
        source = cfg.base or train_meta.get("config", {}).get("model")
        if not source:
            raise GiftError(f"--combine {cfg.combine} needs the base model the adapter was trained on: pass --base")
        check_weights_safe(source, cfg.trust_pickle)
        base = stored_weights(source, cfg.trust_pickle)
    merger = Merger(cfg, deltas, base)
    shards = weight_files(cfg.instruct)
    with atomic_dir(out, cfg.overwrite) as tmp:
        if shards and cfg.dtype == "auto":
            merge_shards(shards, merger, tmp)
        else:
            merge_in_memory(cfg, merger, tmp)
        dtype = merger.dtypes.most_common(1)[0][0]  # of the merged tensors (a checkpoint may mix dtypes)
        survival = merger.survival.shares()
        record = {"gift_version": __version__, "config": to_dict(cfg), "modules": len(deltas),
                  "tensors": merger.dtypes.total(), "dtype": dtype_name(dtype), "survival": survival,
                  "rounding_warning": rounding_warning(survival, dtype_name(dtype)),
                  "adapter_training": train_meta.get("config", {})}
        if cfg.parity_rows and cfg.combine == "linear":
            record["parity"] = parity(cfg, tmp, dtype)
            failure = parity_failure(record["parity"], survival.get("overall", {"kept": 1.0, "error": 0.0}))
            if failure:
                raise GiftError(f"parity check failed: the merged model's logits differ from PeftModel(instruct, "
                                f"adapter) at λ {cfg.scale:g} {failure}; nothing was written")
        (tmp / "gift_merge.json").write_text(json.dumps(record, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(cfg, train_meta, record))
    if record["rounding_warning"]:
        print(f"gift: warning: {record['rounding_warning']}", file=sys.stderr)
    print(f"merged {record['tensors']} tensors (scale {cfg.scale}" + (f", {cfg.combine}" if base else "") + f") -> {out}")
    return out
