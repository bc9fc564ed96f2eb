"""Evaluation: batched generation (left padding, KV cache) vs one prompt at a time, same prompts and length.

Greedy decoding with a fixed number of new tokens (no early stop), so both sides do the same work.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from gift.generate import generate_hf  # noqa: E402
from gift.model import load_model, load_tokenizer  # noqa: E402


def prompts_for(tok: Any, n: int) -> list[str]:
    """GSM8K questions where ../shared/data has them, else synthetic ones; through the chat template."""
    from gift.benchmarks import load_benchmark
    from gift.errors import GiftError
    try:
        questions = [p.question for p in load_benchmark("gsm8k", limit=n).problems]
    except GiftError:
        questions = [f"Janet has {i} ducks and buys {i + 3} more. How many ducks does she have?" for i in range(n)]
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions]


def measure(model_path: str, prompts: int, new_tokens: int) -> dict[str, Any]:
    tok, model = load_tokenizer(model_path), load_model(model_path)
    texts = prompts_for(tok, prompts)
    model.generation_config.min_new_tokens = new_tokens  # both sides generate exactly new_tokens

    @torch.inference_mode()
    def one_at_a_time() -> None:
        for p in texts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False)
            model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)

    def batched() -> None:
        generate_hf(model, tok, texts, 1, 0.0, 1.0, new_tokens, len(texts), 0, "batched")

    seconds = {}
    for name, fn in (("one_at_a_time", one_at_a_time), ("batched", batched)):
        t = time.perf_counter()
        fn()
        seconds[name] = time.perf_counter() - t
    speedup = seconds["one_at_a_time"] / seconds["batched"]
    print(f"generate: one at a time {seconds['one_at_a_time']:.1f}s, batched {seconds['batched']:.1f}s -> {speedup:.1f}x")
    return {"model": Path(model_path).name, "prompts": len(texts), "new_tokens": new_tokens, "seconds": seconds,
            "speedup_batched": speedup, "goal": ">= 5x on CPU"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()
    write("generate", measure(args.model, args.prompts, args.new_tokens))
