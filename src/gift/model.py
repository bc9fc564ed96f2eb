"""Loading models and tokenizers from a local directory, a GGUF file or a hub id, and comparing pairs.

Checkpoints are read from safetensors or GGUF; a pickled checkpoint (`.bin`, `.pt`) is refused unless
the user passes `--trust-pickle`, since unpickling runs arbitrary code.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from .errors import GiftError

SHAPE_KEYS = ["hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "vocab_size"]


def source_kwargs(source: str) -> tuple[str, dict[str, Any]]:
    """(path or id, extra from_pretrained kwargs) for a model directory, a `.gguf` file, or a hub id."""
    p = Path(source)
    looks_like_path = p.suffix == ".gguf" or source.startswith((".", "/", "~")) or source.count("/") > 1
    if not p.exists() and looks_like_path:
        raise GiftError(f"{source}: not found (a local model directory or .gguf file was expected)")
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent), {"gguf_file": p.name}
    if p.is_dir() and not (p / "config.json").exists():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(p), {"gguf_file": ggufs[0].name}
        if not ggufs:
            raise GiftError(f"{p}: no config.json or .gguf file; expected a Hugging Face model directory")
        raise GiftError(f"{p}: several .gguf files; name one, e.g. {ggufs[0]}")
    return source, {}


def local_dir(source: str) -> Path | None:
    """A model's local directory: the directory itself, or a hub id's snapshot in the Hugging Face cache (looked up,
    never downloaded), so that a hub id is streamed shard by shard like a directory instead of loaded whole."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError, OSError):
        return None


def weight_files(source: str) -> list[Path] | None:
    """The safetensors shards of a local model (a directory or a cached hub id), or None where weights must be loaded
    (GGUF, pickles): the shards the index lists, else model.safetensors, else every *.safetensors file (a Mistral
    repository's consolidated.safetensors beside its shards is another copy of the same weights, not a shard)."""
    path, kwargs = source_kwargs(source)
    folder = None if kwargs else local_dir(path)
    if folder is None:
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    return sorted(folder.glob("*.safetensors")) or None


def check_weights_safe(source: str, trust_pickle: bool) -> None:
    """Refuse a local checkpoint stored only as a pickle, unless the user trusts it."""
    p = Path(source)
    d = p.parent if p.is_file() else p
    if not d.is_dir() or p.suffix == ".gguf" or any(d.glob("*.safetensors")) or any(d.glob("*.gguf")):
        return
    pickles = sorted(x.name for x in d.iterdir() if x.suffix in {".bin", ".pt", ".pth", ".pkl"})
    if pickles and not trust_pickle:
        raise GiftError(f"{d}: weights are stored only as a pickle ({pickles[0]}), which can run code when loaded; "
                        f"convert them to safetensors, or pass --trust-pickle if you trust the file")


def pick_dtype(name: str) -> torch.dtype:
    """'auto' is bfloat16 on a GPU that has it and float32 otherwise (CPU)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise GiftError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16") from None


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    path, kwargs = source_kwargs(source)
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as e:
        raise GiftError(f"{source}: cannot load a tokenizer ({str(e).splitlines()[0]}); "
                        f"pass a local model directory (no model hub is needed)") from None
    if tok.pad_token_id is None:  # Llama and Mistral tokenizers have none; padding is masked out everywhere
        tok.pad_token, tok.gift_pad_is_eos = tok.eos_token, True
    return tok


def load_config(source: str) -> Any:
    from transformers import AutoConfig

    path, kwargs = source_kwargs(source)
    try:
        return AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise GiftError(f"{source}: cannot read the model config ({str(e).splitlines()[0]})") from None


def load_model(source: str, dtype: str = "auto", trust_pickle: bool = False) -> Any:
    """A causal LM in eval mode. GGUF weights are dequantised and the quantizer state dropped,
    so the model trains, merges and saves like any other."""
    from transformers import AutoModelForCausalLM

    check_weights_safe(source, trust_pickle)
    path, kwargs = source_kwargs(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype), use_safetensors=None if
                                                     trust_pickle or "gguf_file" in kwargs else True, **kwargs)
    except OSError as e:
        raise GiftError(f"{source}: cannot load the model ({str(e).splitlines()[0]}); "
                        f"pass a local model directory (no model hub is needed)") from None
    if "gguf_file" in kwargs:
        model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model.eval()


def vocab_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides that token ids mean the same text: the token -> id map and the added tokens' content
    and flags (special, normalized, lstrip, rstrip, single_word). Which token is bos/eos/pad differs legitimately
    between a base and its instruct model (Llama-3.1: <|end_of_text|> vs <|eot_id|>; Qwen2.5: <|endoftext|> vs
    <|im_end|>) and is compared apart, by special_token_notes, as information."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    added = [[i, t.content, t.special, t.normalized, t.lstrip, t.rstrip, t.single_word]
             for i, t in sorted(tokenizer.added_tokens_decoder.items())]
    return hashlib.sha256(json.dumps([vocab, added], ensure_ascii=False).encode()).hexdigest()[:16]


def earlier_vocab_fingerprint(tokenizer: Any) -> str:
    """The fingerprint gift wrote before special roles left it (the token -> id map and the special tokens' names):
    annotations and adapters made then still carry it, and are the same vocabulary when it matches."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    specials = sorted(str(t) for t in tokenizer.all_special_tokens)
    return hashlib.sha256(json.dumps([vocab, specials], ensure_ascii=False).encode()).hexdigest()[:16]


def same_vocab(recorded: str, tokenizer: Any) -> bool:
    """Whether a recorded fingerprint is this tokenizer's, by today's formula or the earlier one."""
    return recorded in (vocab_fingerprint(tokenizer), earlier_vocab_fingerprint(tokenizer))


def require_annotation_vocab(meta: dict[str, Any], tokenizer: Any, path: Any, whose: str) -> str:
    """The tokenizer's fingerprint, after refusing one whose token ids mean other text than the annotation's;
    a difference in special roles only (eos, pad) is printed as a note."""
    fp = vocab_fingerprint(tokenizer)
    if not same_vocab(meta["vocab_fingerprint"], tokenizer):
        raise GiftError(f"{path}: annotated with a tokenizer ({meta['vocab_fingerprint']}) that differs from {whose} "
                        f"({fp}); its token ids would mean other text. Re-annotate, or train a model of the same tokenizer")
    notes = special_token_notes(meta.get("special_tokens", {}), special_tokens(tokenizer), "annotation's teacher", whose)
    if meta.get("special_tokens") and notes:
        eot = ", ".join(tokenizer.convert_ids_to_tokens(meta["eot_token_ids"]))
        print(f"gift: note: same token ids, special roles differ ({'; '.join(notes)}); turns end with {eot}, the "
              f"end-of-turn token of the annotation's template", file=sys.stderr)
    return fp


SPECIAL_ROLES = ("bos", "eos", "pad", "unk")


def special_tokens(tokenizer: Any) -> dict[str, str | None]:
    """Which token plays each special role, as the tokenizer's files set it (a pad that load_tokenizer borrowed
    from eos counts as none)."""
    roles = {role: getattr(tokenizer, f"{role}_token", None) for role in SPECIAL_ROLES}
    return {**roles, "pad": None if getattr(tokenizer, "gift_pad_is_eos", False) else roles["pad"]}


def special_token_notes(a: dict[str, str | None], b: dict[str, str | None], a_name: str, b_name: str) -> list[str]:
    """'eos: <|end_of_text|> (base) vs <|eot_id|> (instruct)' for every role two tokenizers fill differently."""
    return [f"{role}: {a.get(role)} ({a_name}) vs {b.get(role)} ({b_name})" for role in SPECIAL_ROLES
            if a.get(role) != b.get(role)]


def content_sha256(source: str) -> str:
    """sha256 over a local model's files (a directory's, names included, or one .gguf file); a hub id, which has no
    local files to read, is its own key. Used to tell a model replaced at the same path from the one a cache holds."""
    p = Path(source)
    if not p.exists():
        return f"id:{source}"
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(p if p.is_dir() else p.parent).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def template_fingerprint(template: str | None) -> str:
    return hashlib.sha256((template or "").encode()).hexdigest()[:16]


def model_shape(config: Any) -> dict[str, Any]:
    """What two models must share for an adapter of one to load onto the other."""
    text = config.get_text_config()
    return {"model_type": config.model_type, **{k: getattr(text, k, None) for k in SHAPE_KEYS}}


def shape_mismatch(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> str | None:
    """The first difference between two model_shape()s, as one line, or None."""
    if a["model_type"] != b["model_type"]:
        return f"architecture differs: {a_name} is {a['model_type']}, {b_name} is {b['model_type']}"
    for key in SHAPE_KEYS:
        if a.get(key) != b.get(key):
            return f"{key} differs: {a_name} has {a.get(key)}, {b_name} has {b.get(key)}"
    return None
