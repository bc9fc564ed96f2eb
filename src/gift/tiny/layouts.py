"""Base/instruct pairs laid out like the paper's families, for tests: the real tokenizers of Llama-3.x, Qwen2.5,
DeepSeek and Phi-3 (llama.cpp's vocabulary files in ../shared/data/vocab), each configured as that family's
published base and instruct models are, with tiny random-weight models of the family's architecture and
vocabulary size. Instruct = base + Gaussian noise at a tenth of the weights' scale (relative distance about 0.1, inside
what transfers), so `gift check-pair` finds them twins.

How each is configured (from the published tokenizer_config.json / generation_config.json of the models named):
- llama3 (Llama-3.1-8B / -Instruct): one token list; bos <|begin_of_text|> in both; eos <|end_of_text|> (base) vs
  <|eot_id|> (instruct); no pad; base has no chat template; instruct's (written here, the published layout without
  tools) opens turns with <|start_header_id|>role<|end_header_id|> and closes them with <|eot_id|>, with the
  default system block; instruct generation config stops at 128009 and 128001; Llama-3.1 adds
  <|eom_id|> (128008), a reserved token in this Llama-3 vocabulary. Untied embeddings.
  The GGUF vocabulary loads with one extra token (<|endoftext|>, id 128256): the model has 128257 rows.
- qwen2.5 (Qwen2.5-7B / -Instruct): eos <|endoftext|> (base) vs <|im_end|> (instruct); pad <|endoftext|> in both;
  no bos; both carry the ChatML template of the vocabulary file; 152064 embedding rows (more than the tokenizer's
  151936, as published). Tied here (Qwen2.5-0.5B's layout).
- deepseek (DeepSeek-Math-7B base / instruct): bos <｜begin▁of▁sentence｜>, eos <｜end▁of▁sentence｜> in both, no pad;
  the base has no template, the instruct's is `User: …\n\nAssistant: …<eos>` (generation prompt `Assistant:`).
- phi3 (Phi-3-mini-4k-instruct; no base was published): the vocabulary as shipped is the base (eos <|endoftext|>),
  the instruct ends turns with <|end|> (its later config: eos <|end|>, pad <|endoftext|>) and keeps the file's
  template, which has no system role. Phi-3's architecture: fused qkv_proj and gate_up_proj.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import perturbed, random_model

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system }}{{- '<|eot_id|>' }}"
    "{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
DEEPSEEK_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
FILE_TEMPLATE = "file"  # keep the vocabulary file's own template


@dataclass
class Side:
    """One model's tokenizer roles, chat template and stop ids (None: the role is unset, as published)."""

    eos: str
    bos: str | None
    pad: str | None
    template: str | None
    stops: list[str] = field(default_factory=list)  # generation_config eos ids besides eos


@dataclass
class Family:
    gguf: str
    arch: str
    vocab_size: int  # embedding rows (>= the tokenizer's length)
    tied: bool
    base: Side
    instruct: Side


FAMILIES: dict[str, Family] = {
    "llama3": Family("ggml-vocab-llama-bpe.gguf", "llama", 128257, False,
                     Side("<|end_of_text|>", "<|begin_of_text|>", None, None),
                     Side("<|eot_id|>", "<|begin_of_text|>", None, LLAMA3_TEMPLATE,
                          ["<|end_of_text|>"])),
    "qwen2.5": Family("ggml-vocab-qwen2.gguf", "qwen2", 152064, True,
                      Side("<|endoftext|>", None, "<|endoftext|>", FILE_TEMPLATE),
                      Side("<|im_end|>", None, "<|endoftext|>", FILE_TEMPLATE, ["<|endoftext|>"])),
    "deepseek": Family("ggml-vocab-deepseek-llm.gguf", "llama", 102403, False,
                       Side("<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", None, None),
                       Side("<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", None, DEEPSEEK_TEMPLATE)),
    "phi3": Family("ggml-vocab-phi-3.gguf", "phi3", 32064, False,
                   Side("<|endoftext|>", "<s>", "<|endoftext|>", FILE_TEMPLATE),
                   Side("<|end|>", "<s>", "<|endoftext|>", FILE_TEMPLATE, ["<|endoftext|>", "<|assistant|>"])),
}


def family_tokenizer(side: Side, file_tokenizer: Any) -> Any:
    """The vocabulary file's tokenizer with this side's roles and template (a fresh copy each time)."""
    import copy

    tok = copy.deepcopy(file_tokenizer)
    tok.eos_token, tok.bos_token, tok.pad_token = side.eos, side.bos, side.pad
    tok.chat_template = file_tokenizer.chat_template if side.template == FILE_TEMPLATE else side.template
    return tok


def tiny_config(family: Family, tok: Any, side: Side) -> Any:
    from transformers import LlamaConfig, Phi3Config, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "phi3": Phi3Config}[family.arch]
    ids = tok.convert_tokens_to_ids([side.eos, *side.stops])
    return cls(vocab_size=family.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=2 if family.arch == "phi3" else 1, intermediate_size=32,
               tie_word_embeddings=family.tied, max_position_embeddings=512,
               bos_token_id=tok.convert_tokens_to_ids(side.bos) if side.bos else None,
               eos_token_id=ids if len(ids) > 1 else ids[0],
               pad_token_id=tok.convert_tokens_to_ids(side.pad) if side.pad else None)


def build_pair(name: str, vocab_dir: Path, out: Path) -> tuple[Path, Path]:
    """(base_dir, instruct_dir) of family `name` under `out`, each a model directory with its own tokenizer,
    config and generation config; written once, reused when `out` already holds them."""
    from transformers import AutoTokenizer, GenerationConfig

    family = FAMILIES[name]
    dirs = out / "base", out / "instruct"
    if all((d / "config.json").is_file() for d in dirs):
        return dirs
    file_tokenizer = AutoTokenizer.from_pretrained(vocab_dir, gguf_file=family.gguf)
    base_model = None
    for side, d in zip((family.base, family.instruct), dirs):
        tok = family_tokenizer(side, file_tokenizer)
        config = tiny_config(family, tok, side)
        model = random_model(config, seed=0) if base_model is None else perturbed(base_model, 0.002, seed=1)
        model.config.bos_token_id, model.config.eos_token_id = config.bos_token_id, config.eos_token_id
        model.config.pad_token_id = config.pad_token_id
        model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                                   pad_token_id=config.pad_token_id)
        base_model = base_model or model
        model.save_pretrained(d)
        tok.save_pretrained(d)
        (d / "layout.json").write_text(json.dumps({"family": name, "role": "instruct" if side is family.instruct
                                                   else "base", "gguf": family.gguf}, indent=2) + "\n")
    return dirs
