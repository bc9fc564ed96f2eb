"""Tiny models built from code: a real `tokenizers` tokenizer with a ChatML template and small Llama/Qwen2
configurations, used by the test fixtures and the benchmarks. The bundled pair's world and build live in
`gift.tiny.world` and `gift.tiny.build` (scripts/build_tiny_pair.py is the only way the pair is made);
nothing in the toolkit imports this package."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

SPECIALS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE trained on `texts`, with ChatML special tokens and chat template.

    `tokenizer_class` is pinned to PreTrainedTokenizerFast so that transformers does not rebuild it
    as the tokenizer class of the model type it is saved beside (a Qwen2 config would give a Qwen2 BPE).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML
    return fast


def save_tokenizer(tokenizer: Any, path: str | Path) -> None:
    import json

    tokenizer.save_pretrained(path)
    cfg_path = Path(path) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def model_config(arch: str, vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                 intermediate: int = 64, tied: bool = True, max_positions: int = 512) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    return cls(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=kv_heads, intermediate_size=intermediate, tie_word_embeddings=tied,
               max_position_embeddings=max_positions, pad_token_id=0, bos_token_id=1, eos_token_id=3)


def random_model(config: Any, seed: int) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def perturbed(model: Any, scale: float, seed: int) -> Any:
    """A copy of `model` with every weight moved by Gaussian noise: a stand-in 'instruct' twin."""
    import copy

    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return twin


def random_adapter(model_dir: str | Path, out: str | Path, rank: int = 4, alpha: float = 8, rslora: bool = False,
                   seed: int = 0) -> Path:
    """A LoRA adapter on every linear projection of the model in model_dir with B drawn at random (PEFT starts B at
    zero, which would make any merged or served model look right), saved as a PEFT directory."""
    from peft import LoraConfig, get_peft_model

    from ..model import load_model

    torch.manual_seed(seed)
    model = get_peft_model(load_model(str(model_dir), "float32"),
                           LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", use_rslora=rslora))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    model.save_pretrained(out)
    return Path(out)
