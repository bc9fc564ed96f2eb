"""How the paper's code normalises its loss, against gift, measured on the bundled pair's paper task.

The paper's trainer (github zwRuan/gift, src/python_scripts/*_gift_2k.py) takes Σ w·CE / Σ w over each micro-batch
(per_device_train_batch_size 4) and leaves the sum over micro-batches to transformers' Trainer, which under its pinned
transformers 4.51 does not divide a custom compute_loss by the accumulation steps when the model's forward takes
**kwargs (Llama and Qwen2 do). gift takes Σ w·CE / Σ w over the whole optimiser step. For the rows of each of the
8 optimiser steps of `configs/tiny_paper_8steps.yaml` (256 rows each, cut into micro-batches of 4 in the drawn
order as the paper's sampler cuts them), at the adapter as initialised and as gift trains it, this writes the
cosine between gift's step gradient and the per-micro-batch one (mean over micro-batches: a Trainer that divides),
their norm ratio, and the norm of the undivided sum against the clipping threshold (max_grad_norm 1.0 in both):

    python bench/normaliser.py      # bench/results/normaliser.json
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from gift.annotate import annotate
from gift.config import AnnotateConfig, TrainConfig
from gift.loss import GoldLogprobs
from gift.model import load_model, load_tokenizer
from gift.train import build_lora, collate, load_train_data, step_indices, train, weight_params, weighted_step
from gift.weighting import normaliser

ROOT = Path(__file__).parents[1]
TINY = ROOT / "src" / "gift" / "assets" / "tiny"
MICRO, STEPS, GLOBAL = 4, 8, 256  # the paper's per-device batch; one epoch of 2,000 rows at global batch 256


def gradients(model, data, rows: list[int], method: str, cfg: TrainConfig, pad_id: int) -> dict[str, float]:
    """The step's gradient three ways, from each micro-batch's unnormalised Σ w·CE gradient and its Σ w."""
    scorer, wp = GoldLogprobs(model), weight_params(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    parts, weights = [], []
    for s in range(0, len(rows), MICRO):
        b = collate(data, rows[s:s + MICRO], pad_id)
        model.zero_grad()
        weighted_step(scorer, b, method, wp, 1.0).loss.backward()
        parts.append(torch.cat([p.grad.flatten() for p in params]).double())
        weights.append(float(normaliser(method, b["q"], b["is_eot"], wp)))
    parts_t, w = torch.stack(parts), torch.tensor(weights, dtype=torch.float64)
    step = parts_t.sum(0) / w.sum()  # gift
    per_micro = (parts_t / w[:, None]).mean(0)  # the paper's loss, accumulated by a Trainer that divides
    undivided = per_micro * len(weights)  # ... and by transformers 4.51's, which does not
    return {"cosine": float(torch.nn.functional.cosine_similarity(step, per_micro, 0)),
            "norm_ratio": float(per_micro.norm() / step.norm()), "gift_norm": float(step.norm()),
            "undivided_norm": float(undivided.norm()), "micro_weight_cv": float(w.std() / w.mean())}


def main() -> None:
    out: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_file = TINY / "tasks" / "paper" / "train.jsonl"
        ann = annotate(AnnotateConfig(teacher=str(TINY / "instruct"), data=str(data_file), out=str(tmp / "ann"),
                                      max_length=256, batch_size=64))
        tokenizer = load_tokenizer(str(TINY / "base"))
        for method in ("gift", "sft"):
            cfg = TrainConfig(model=str(TINY / "base"), data=str(ann), out=str(tmp / f"adapter-{method}"),
                              method=method, rank=32, alpha=64, lora_dropout=0.0, lr=2e-3, batch_size=32,
                              grad_accum=8, max_steps=STEPS, warmup_ratio=0.1, seed=0, gradient_checkpointing=False)
            data = load_train_data(cfg, tokenizer)
            steps = [step_indices(len(data.rows), s, GLOBAL, cfg.seed) for s in range(STEPS)]
            initial = build_lora(load_model(cfg.model, "float32"), cfg)
            train(cfg)
            from peft import PeftModel
            trained = PeftModel.from_pretrained(load_model(cfg.model, "float32"), cfg.out, is_trainable=True)
            out[method] = {label: [gradients(m, data, rows, method, cfg, tokenizer.pad_token_id) for rows in steps]
                           for label, m in (("initial", initial), ("trained", trained))}
    path = ROOT / "bench" / "results" / "normaliser.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for method, by in out.items():
        for label, rows in by.items():
            cos = [r["cosine"] for r in rows]
            ratio = [r["norm_ratio"] for r in rows]
            und = [r["undivided_norm"] for r in rows]
            print(f"{method:4} {label:8} cosine {min(cos):.3f}-{max(cos):.3f}  |per-micro|/|gift| "
                  f"{min(ratio):.2f}-{max(ratio):.2f}  undivided |g| {min(und):.2f}-{max(und):.2f} (clip at 1.0)")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
