"""Evaluation: batched generation (left padding, KV cache) vs one prompt at a time, same prompts and length.

Greedy decoding, a fixed number of new tokens (no early stop) so both sides do the same work.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write  # noqa: E402

from gift.benchmarks import load_benchmark  # noqa: E402
from gift.evaluate import render_prompts  # noqa: E402
from gift.generate import generate_hf  # noqa: E402
from gift.model import load_model, load_tokenizer  # noqa: E402


def one_at_a_time(model, tok, prompts, new_tokens):
    tok.padding_side = "left"
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False)
            model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--name", default="generation")
    args = ap.parse_args(argv)
    tok, model = load_tokenizer(args.model), load_model(args.model)
    prompts = render_prompts(tok, load_benchmark("gsm8k", limit=args.prompts).problems, None)

    def batched():
        model.generation_config.min_new_tokens = args.new_tokens
        generate_hf(model, tok, prompts, 1, 0.0, 1.0, args.new_tokens, len(prompts), 0, "batched")
        model.generation_config.min_new_tokens = None

    timings = {}
    for name, fn in (("one_at_a_time", lambda: one_at_a_time(model, tok, prompts, args.new_tokens)), ("batched", batched)):
        t = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - t
    speedup = timings["one_at_a_time"] / timings["batched"]
    result = {"model": args.model, "prompts": len(prompts), "new_tokens": args.new_tokens, "seconds": timings,
              "speedup_batched": speedup, "goal": ">= 5x on CPU", "met": speedup >= 5}
    print(f"generation: one-at-a-time {timings['one_at_a_time']:.1f}s, batched {timings['batched']:.1f}s "
          f"-> {speedup:.1f}x (-> {write(args.name, result)})")
    return result


if __name__ == "__main__":
    main()
