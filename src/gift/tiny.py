"""Tiny models built from code: a real `tokenizers` tokenizer with a ChatML template, small Llama/Qwen2
configurations, and the bundled pair's build (pretraining, instruction tuning, task splits). Used by the
test fixtures and by scripts/build_tiny_pair.py, the only way src/gift/assets/tiny is produced."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import world
from .atomic import atomic_dir

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


# ---- the bundled pair: pretraining and instruction tuning from scratch ----

@dataclass
class TinyConfig:
    """Everything the bundled pair is built from; written to its manifest."""

    seed: int = 0
    people: int = 24
    vocab_size: int = 640
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 384
    block: int = 64  # pretraining sequence length
    pretrain_steps: int = 3000
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3
    instruct_steps: int = 2000
    instruct_batch: int = 32
    instruct_lr: float = 1e-3
    splits: dict[str, dict[str, int]] = field(default_factory=lambda: {
        "math": {"train": 2000, "dev": 200, "test": 300},
        "knowledge": {"train": 1000, "dev": 200, "test": 300},
        "retention": {"dev": 120, "test": 300}})


def fit(model: Any, batches: Iterator[dict[str, torch.Tensor]], steps: int, lr: float, desc: str) -> list[float]:
    """Full-parameter training with mean token NLL, AdamW and warm-up + cosine decay; returns the losses."""
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from .loss import GoldLogprobs

    scorer = GoldLogprobs(model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    losses = []
    for _ in (bar := tqdm(range(steps), desc=desc, unit="step")):
        b = next(batches)
        loss = -scorer(b["input_ids"], b["attention_mask"], b["labels"]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return losses


def packed_blocks(tokenizer: Any, docs: Iterator[str], block: int, batch: int) -> Iterator[dict[str, torch.Tensor]]:
    """Plain-text pretraining batches: documents joined by <|endoftext|>, cut into full blocks."""
    buffer: list[int] = []
    while True:
        while len(buffer) < block * batch:
            buffer += tokenizer(next(docs), add_special_tokens=False)["input_ids"] + [tokenizer.bos_token_id]
        ids = torch.tensor(buffer[: block * batch]).view(batch, block)
        buffer = buffer[block * batch:]
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def chat_batches(tokenizer: Any, examples: Iterator[dict[str, str]], batch: int) -> Iterator[dict[str, torch.Tensor]]:
    """Instruction-tuning batches through the chat template, loss on the responses only."""
    from .annotate import pad_batch
    from .data import TemplateOptions, encode, to_example

    opts = TemplateOptions()
    while True:
        rows = [encode(tokenizer, to_example(next(examples), "instruct", 0), opts) for _ in range(batch)]
        yield pad_batch(rows, tokenizer.pad_token_id)


# ---- the build ----

TASKS = {"math": world.math_example, "knowledge": world.knowledge_example}


def forever(make):
    while True:
        yield make()


def write_splits(cfg: TinyConfig, ps: list[world.Person], out: Path) -> dict[str, int]:
    """Task files, each split from its own seeded stream; duplicates across splits are removed from dev/test."""
    counts = {}
    (out / "data").mkdir(parents=True)
    for task, sizes in cfg.splits.items():
        seen: set[str] = set()
        for split, n in sizes.items():
            rng = random.Random(f"{cfg.seed}-{task}-{split}")
            rows: list[dict] = []
            while len(rows) < n:
                row = world.retention_example(rng) if task == "retention" else TASKS[task](rng, ps)
                if row["question"] not in seen:
                    seen.add(row["question"])
                    rows.append(row)
            (out / "data" / f"{task}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            counts[f"{task}_{split}"] = n
    return counts


def world_tokenizer(cfg: TinyConfig) -> tuple[Any, random.Random, list[world.Person]]:
    """The world's people and the tokenizer trained on a sample of all its text, from cfg.seed;
    returns the random stream positioned where the build continues from."""
    rng = random.Random(cfg.seed)
    ps = world.people(rng, cfg.people)
    sample = [world.pretraining_doc(rng, ps) for _ in range(3000)]
    sample += [" ".join(world.instruct_example(rng, ps).values()) for _ in range(1000)]
    sample += [" ".join(str(v) for v in TASKS[t](rng, ps).values()) for t in TASKS for _ in range(500)]
    return build_tokenizer(sample, cfg.vocab_size), rng, ps


def build(cfg: TinyConfig, out: Path, overwrite: bool = True) -> dict[str, Any]:
    """Pretrain base, instruction-tune instruct, write both with the task splits and a manifest into `out`."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    tok, rng, ps = world_tokenizer(cfg)
    config = model_config("llama", len(tok), hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                          kv_heads=cfg.heads, intermediate=cfg.intermediate, tied=True, max_positions=256)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    model = random_model(config, cfg.seed)
    docs = forever(lambda: world.pretraining_doc(rng, ps))
    pre = fit(model, packed_blocks(tok, docs, cfg.block, cfg.pretrain_batch), cfg.pretrain_steps, cfg.pretrain_lr,
              "pretrain base")
    with atomic_dir(out, overwrite) as tmp:
        model.save_pretrained(tmp / "base")
        save_tokenizer(tok, tmp / "base")
        chats = forever(lambda: world.instruct_example(rng, ps))
        ins = fit(model, chat_batches(tok, chats, cfg.instruct_batch), cfg.instruct_steps, cfg.instruct_lr,
                  "instruction-tune")
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(tmp / "instruct")
        save_tokenizer(tok, tmp / "instruct")
        counts = write_splits(cfg, ps, tmp)
        (tmp / "world.json").write_text(json.dumps([dataclasses.asdict(p) for p in ps], indent=1) + "\n")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "seed": cfg.seed, "config": dataclasses.asdict(cfg), "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tok), "build_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__, "final_loss": {"pretrain": sum(pre[-50:]) / len(pre[-50:]),
                                                      "instruct": sum(ins[-50:]) / len(ins[-50:])},
            "rows": counts,
            "sha256": {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
