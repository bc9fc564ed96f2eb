"""Text generation for evaluation: batched Hugging Face generate (left padding, KV cache), or one vLLM engine.

Decoding is exactly what the command line says: greedy is the plain argmax and sampling uses only the
temperature and top-p given; nothing is taken from the model's generation_config.json (a repetition
penalty or top-k there would otherwise change the answers, and merged models carry the instruct model's
file while base has its own). Prompts are sorted by length so each batch pads little. Sampling draws
each sequence's tokens from a generator of its own, seeded by (seed, prompt, sample number), so a
problem's samples do not depend on which prompts share its batch, on --batch-size or on --limit. vLLM gets the same
contract: prompts as the token ids the HF path feeds (no second BOS), the HF path's stop set, and one request per
(problem, sample) with its own seed from the same (seed, prompt, sample) hash.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from .data import TemplateOptions, end_of_turn_ids
from .errors import GiftError


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's eos, the generation config's, the token the chat template closes an assistant
    turn with (Phi-3's <|end|>, say), and ChatML/Llama-3 markers if present."""
    ids = {tokenizer.eos_token_id}
    if getattr(tokenizer, "chat_template", None):
        ids |= end_of_turn_ids(tokenizer, TemplateOptions())
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>") if t in vocab)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def generate_hf(model: Any, tokenizer: Any, prompts: list[str], n: int, temperature: float, top_p: float,
                max_new_tokens: int, batch_size: int, seed: int, desc: str = "generate"
                ) -> tuple[list[list[str]], list[list[bool]]]:
    """n completions for each chat-rendered prompt (temperature 0 means greedy), and whether each one was cut at
    max_new_tokens (no end-of-turn token generated)."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer, model)
    jobs = sorted(((i, s) for i in range(len(prompts)) for s in range(n)), key=lambda j: len(prompts[j[0]]))
    saved, model.generation_config = model.generation_config, decoding_config(tokenizer, stops)
    try:
        out: list[list[str]] = [[""] * n for _ in prompts]
        capped = [[False] * n for _ in prompts]
        for start in tqdm(range(0, len(jobs), batch_size), desc=desc, unit="batch"):
            batch = jobs[start:start + batch_size]
            enc = tokenizer([prompts[i] for i, _ in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            sampler = [SeededSampler([row_seed(seed, prompts[i], s) for i, s in batch], temperature, top_p)] \
                if temperature > 0 else []
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, use_cache=True,
                                 logits_processor=LogitsProcessorList(sampler))
            new = ids[:, enc["input_ids"].shape[1]:]  # (B, new tokens)
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            stopped = torch.isin(new, torch.tensor(stops, device=new.device)).any(dim=1).tolist()
            for (i, s), text, ended in zip(batch, texts, stopped):
                out[i][s], capped[i][s] = text.strip(), not ended
        return out, capped
    finally:
        model.generation_config = saved


def decoding_config(tokenizer: Any, stops: list[int]) -> Any:
    """A generation config with every knob at its neutral value: plain argmax over the scores, which
    SeededSampler turns into a sample when sampling."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
                            eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)


def row_seed(seed: int, prompt: str, sample: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{sample}\0{prompt}".encode()).digest()[:8], "little") >> 1


class SeededSampler(LogitsProcessor):
    """Temperature and top-p, then a Gumbel-max draw with each row's own generator: the argmax that greedy
    decoding then takes is a sample from the tempered, nucleus-filtered distribution. Written here because
    transformers samples a whole batch from one global generator."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.seeds, self.gens = seeds, None
        self.warpers = [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.gens is None:
            self.gens = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        u = torch.stack([torch.rand(scores.shape[1], generator=g, device=scores.device) for g in self.gens])
        return scores.float() - torch.log(-torch.log(u.clamp_min(1e-20)))


# vLLM serves LoRA only up to the rank its engine was started with, from this list (vllm/config/lora.py)
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that serves adapters of this rank."""
    fit = [r for r in VLLM_RANKS if r >= rank]
    if not fit:
        raise GiftError(f"vLLM serves LoRA ranks up to {VLLM_RANKS[-1]}; these adapters have rank {rank}")
    return fit[0]


class VLLMEngine:
    """One vLLM engine for a whole evaluation or `gift run` (an engine start costs 30-90 s and a GPU's memory), with
    LoRA enabled when candidates are adapters served at run time (max_lora_rank ≥ theirs)."""

    def __init__(self, model_path: str, tokenizer: Any, stops: list[int], dtype: str, seed: int,
                 gpu_memory_utilization: float, max_model_len: int | None, tensor_parallel_size: int,
                 lora_rank: int | None = None):
        try:
            from vllm import LLM
        except ImportError:
            raise GiftError("--backend vllm needs the vllm package (pip install vllm) and a GPU; "
                            "use --backend hf otherwise") from None
        if not torch.cuda.is_available():
            raise GiftError("--backend vllm needs a GPU and none is visible; use --backend hf")
        self.tokenizer, self.stops = tokenizer, stops
        lora = {"enable_lora": True, "max_lora_rank": vllm_rank(lora_rank), "max_loras": 1} if lora_rank else {}
        # generation_config="vllm": the model's generation_config.json (a repetition penalty, top-k) must not become
        # the default of every request, as on the HF path
        self.llm = LLM(model=model_path, tokenizer=model_path, dtype=dtype, seed=seed, generation_config="vllm",
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       tensor_parallel_size=tensor_parallel_size, **lora)

    def generate(self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int,
                 lora: Any = None) -> tuple[list[list[str]], list[list[bool]]]:
        """n completions per prompt in one generate call, as generate_hf returns them; `lora` a LoRARequest or None."""
        from vllm import SamplingParams

        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]  # as the HF path: the template's BOS only
        jobs = [(i, s) for i in range(len(prompts)) for s in range(n)]
        params = [SamplingParams(n=1, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                 max_tokens=max_new_tokens, stop_token_ids=self.stops, skip_special_tokens=True,
                                 seed=row_seed(seed, prompts[i], s) if temperature > 0 else None) for i, s in jobs]
        done = self.llm.generate([{"prompt_token_ids": ids[i]} for i, _ in jobs], params, lora_request=lora,
                                 use_tqdm=True)
        out: list[list[str]] = [[""] * n for _ in prompts]
        capped = [[False] * n for _ in prompts]
        for (i, s), r in zip(jobs, done):
            out[i][s], capped[i][s] = r.outputs[0].text.strip(), r.outputs[0].finish_reason == "length"
        return out, capped
