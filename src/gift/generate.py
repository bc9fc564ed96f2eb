"""Text generation for evaluation: batched Hugging Face generate (left padding, KV cache), or vLLM.

Prompts are sorted by length so each batch pads little; each batch is seeded from (seed, batch number),
so the same command gives the same samples twice.
"""
from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from .errors import GiftError


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's eos, the generation config's, and ChatML/Llama-3 markers if present."""
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>") if t in vocab)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def generate_hf(model: Any, tokenizer: Any, prompts: list[str], n: int, temperature: float, top_p: float,
                max_new_tokens: int, batch_size: int, seed: int, desc: str = "generate") -> list[list[str]]:
    """n completions for each chat-rendered prompt; temperature 0 means greedy."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer, model)
    jobs = sorted(((i, s) for i in range(len(prompts)) for s in range(n)), key=lambda j: len(prompts[j[0]]))
    out: list[list[str]] = [[""] * n for _ in prompts]
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    for b, start in enumerate(tqdm(range(0, len(jobs), batch_size), desc=desc, unit="batch")):
        batch = jobs[start:start + batch_size]
        enc = tokenizer([prompts[i] for i, _ in batch], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        torch.manual_seed(seed * 1_000_003 + b)
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stops,
                             pad_token_id=tokenizer.pad_token_id, use_cache=True, top_k=None, **sampling)
        texts = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for (i, s), text in zip(batch, texts):
            out[i][s] = text.strip()
    return out


def generate_vllm(model_path: str, prompts: list[str], n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int) -> list[list[str]]:
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise GiftError("--backend vllm needs the vllm package (pip install vllm) and a GPU; "
                        "use --backend hf otherwise") from None
    if not torch.cuda.is_available():
        raise GiftError("--backend vllm needs a GPU and none is visible; use --backend hf")
    llm = LLM(model=model_path, seed=seed)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                            max_tokens=max_new_tokens, seed=seed)
    return [[c.text.strip() for c in r.outputs] for r in llm.generate(prompts, params)]
