"""gift train: a LoRA adapter fitted with the token-weighted loss L = Σ w·CE / Σ w.

The denominator is the whole optimiser step's, summed over gradient-accumulation micro-batches and
over processes before the first backward pass, so the adapter does not depend on how a step is split
(batch 4 × 1 equals 2 × 2 equals 1 × 4). Runs unchanged under `accelerate launch` (DDP/FSDP).
Work happens in OUT.partial, which holds checkpoints for --resume and becomes OUT when finished.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import __version__
from .annotate import read_annotations
from .atomic import check_out_dir, publish, staging_dir
from .batching import step_layout, token_width
from .config import TrainConfig, to_dict
from .data import (
    IGNORE,
    Encoded,
    check_template,
    encode_all,
    end_of_turn_ids,
    load_examples,
    template_options,
    weighted_batch,
)
from .errors import GiftError
from .loss import GoldLogprobs, Weighted, packing_refusal, weighted_nll
from .model import load_model, load_tokenizer, model_shape, require_annotation_vocab, special_tokens, vocab_fingerprint
from .weighting import (
    NEEDS_ANNOTATION,
    SELF_WEIGHTED,
    WeightParams,
    kl_alpha,
    normaliser,
    signal_stats,
    teacher_filter,
    token_weights,
    weigher,
)

CHECKPOINT, LOG, TRAIN_META = "checkpoint", "log.jsonl", "gift_train.json"
RESUME_KEYS = ("model", "data", "method", "gamma", "floor", "rho_ratio", "filter_keep", "eaft_alpha", "eaft_topk",
               "asft_alpha", "rank", "alpha", "lora_dropout",
               "target_modules", "lr", "weight_decay", "max_grad_norm", "epochs", "max_steps", "batch_size",
               "grad_accum", "warmup_ratio", "seed")
LAYOUT_KEYS = ("group_by_length", "padding_free", "gradient_checkpointing")  # how a step is computed, not what


@dataclass
class TrainData:
    rows: list[Encoded]
    conf: list[list[float]] | None  # None for raw JSONL (sft/dft need no teacher)
    eot_ids: set[int]
    vocab_fingerprint: str
    data_sha256: str  # of the JSONL the rows came from (an annotation's source)
    teacher: str | None = None  # the annotation's teacher
    filter_threshold: float | None = None  # the least mean log-confidence of a row kept by --filter-keep


def load_train_data(cfg: TrainConfig, tokenizer: Any, source: str | None = None) -> TrainData:
    """An annotation directory as it is (no re-tokenising), or raw JSONL encoded with the model's template;
    `source` reads another file the same way (--eval-data)."""
    path = Path(source or cfg.data)
    flag = "--eval-data" if source else "--data"
    if not path.exists():
        raise GiftError(f"{flag} {path}: not found (an annotation directory from gift annotate, or a JSONL file)")
    if path.is_dir():
        rows, conf, meta = read_annotations(path)
        fp = require_annotation_vocab(meta, tokenizer, path, f"{cfg.model}'s")
        kept, threshold = list(range(len(rows))), None
        if cfg.filter_keep < 1 and not source:
            kept, threshold = teacher_filter(conf, [[y != IGNORE for y in r.labels] for r in rows], cfg.filter_keep,
                                             cfg.floor)
        return TrainData([rows[i] for i in kept], [conf[i] for i in kept], set(meta["eot_token_ids"]), fp,
                         meta["source_sha256"], meta["teacher"], threshold)
    if cfg.method in NEEDS_ANNOTATION or cfg.filter_keep < 1:
        needs = f"--method {cfg.method}" if cfg.method in NEEDS_ANNOTATION else "--filter-keep"
        raise GiftError(f"{needs} needs teacher confidences: run gift annotate on {path} and "
                        f"pass the annotation directory as {flag}")
    examples = load_examples(path, cfg.prompt_field, cfg.response_field)
    opts = template_options(cfg.system_prompt, cfg.suffix, cfg.chat_template)
    check_template(tokenizer, opts, cfg.model)
    rows, report = encode_all(tokenizer, examples, opts, cfg.max_length, cfg.truncate)
    if report.dropped or report.truncated:
        print(f"rows dropped: {dict(report.dropped)}, truncated: {report.truncated}")
    return TrainData(rows, None, end_of_turn_ids(tokenizer, opts), vocab_fingerprint(tokenizer),
                     hashlib.sha256(path.read_bytes()).hexdigest())


def collate(data: TrainData, idx: list[int], pad_id: int, packed: bool = False) -> dict[str, torch.Tensor]:
    """Model inputs plus flat per-token q and end-of-turn flags, in GoldLogprobs' output order."""
    conf = [data.conf[i] for i in idx] if data.conf is not None else None
    return weighted_batch([data.rows[i] for i in idx], conf, data.eot_ids, pad_id, packed)


def packing_mode(request: str, model: Any, rows: list[Encoded], name: str) -> str:
    """How micro-batches are laid out: "padded", "packed", or "cheaper" (per step, see step_layout). Packing needs a
    model whose attention keeps packed rows apart, which a probe on two rows of the data checks first
    (loss.packing_refusal): `on` refuses where it fails, `auto` pads there."""
    if request == "off":
        return "padded"
    refusal = packing_refusal(model, rows)
    if request == "on" and refusal:
        raise GiftError(f"--padding-free on: {name}'s attention does not keep packed rows apart ({refusal}); use "
                        f"--padding-free auto or off")
    return ("packed" if request == "on" else "cheaper") if refusal is None else "padded"


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch: a permutation seeded by (seed, epoch), shared with gift.trl.GIFTTrainer."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


def step_indices(n: int, step: int, global_batch: int, seed: int) -> list[int]:
    """Rows of optimiser step `step`: each epoch's permutation cut into global batches."""
    epoch, within = divmod(step, math.ceil(n / global_batch))
    return epoch_permutation(n, seed, epoch)[within * global_batch:(within + 1) * global_batch]


def build_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = cfg.target_modules[0] if cfg.target_modules == ["all-linear"] else cfg.target_modules
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.lora_dropout, target_modules=targets,
                      task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():  # PEFT calls a transformers API that transformers 5 deprecates
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            peft_model = get_peft_model(model, lora)
    except ValueError as e:
        raise GiftError(f"--target-modules {cfg.target_modules}: {str(e).splitlines()[0]}") from None
    embedded = sorted({n.split(".lora_embedding_")[0].rsplit(".", 1)[-1] for n, _ in peft_model.named_parameters()
                       if ".lora_embedding_" in n})
    if embedded:
        raise GiftError(f"--target-modules: {', '.join(embedded)} is an embedding layer, whose LoRA gift merge cannot "
                        f"merge into the instruct model; target linear layers only")
    return peft_model


def save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, step: int, cfg: TrainConfig,
                    accelerator: Any) -> None:
    """Trainable weights, optimiser, schedule and every process's RNG, written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        trainable = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(trainable, tmp / "trainable.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    "config": {k: getattr(cfg, k) for k in RESUME_KEYS}}, tmp / "state.pt")
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    accelerator.wait_for_everyone()


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, cfg: TrainConfig,
                    accelerator: Any) -> int:
    """Restore a checkpoint; refuses one written with different training settings."""
    state = torch.load(path / "state.pt", weights_only=True)  # our own file, and still never unpickled blindly
    for key, value in state["config"].items():
        if getattr(cfg, key) != value:
            raise GiftError(f"--resume: {key} was {value!r} in the interrupted run, now {getattr(cfg, key)!r}; "
                            f"use the same settings or drop --resume")
    trainable = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(torch.load(path / f"rng-{accelerator.process_index}.pt", weights_only=True))
    return state["step"]


def rng_state() -> dict[str, Any]:
    """The CPU generator and every CUDA device's: dropout masks on a GPU come from the device generator."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"]:
        if len(state["cuda"]) != torch.cuda.device_count():
            raise GiftError(f"--resume: the checkpoint holds the random state of {len(state['cuda'])} GPUs, this "
                            f"process sees {torch.cuda.device_count()}; resume on the same devices")
        torch.cuda.set_rng_state_all(state["cuda"])


def weight_params(cfg: TrainConfig) -> WeightParams:
    return WeightParams(cfg.gamma, cfg.floor, cfg.rho_ratio, cfg.eaft_alpha, cfg.eaft_topk, cfg.asft_alpha)


def weighted_step(scorer: Any, b: dict[str, torch.Tensor], method: str, wp: WeightParams,
                  denominator: torch.Tensor | float) -> Weighted:
    """One micro-batch's loss with the method's weights over the step's denominator (shared with GIFTTrainer)."""
    inputs, pos = (b["input_ids"], b.get("attention_mask"), b["labels"]), b.get("position_ids")
    if method == "rho":  # selection by the model's own loss: log-probs first, then weights
        logp = scorer(*inputs, position_ids=pos)
        w = token_weights(method, b["q"], b["is_eot"], logp.detach(), wp)
        return Weighted(weighted_nll(logp, w, denominator), logp.detach(), w, torch.zeros_like(w))
    # weights known before the forward pass, or (dft, eaft, asft) formed from each chunk's logits inside it
    static = None if method in SELF_WEIGHTED else token_weights(method, b["q"], b["is_eot"], None, wp)
    return scorer(*inputs, coef=static, scale=1 / denominator, weigh=weigher(method, wp), kl_alpha=kl_alpha(method, wp),
                  position_ids=pos)


@torch.no_grad()
def held_out_loss(scorer: Any, data: TrainData, cfg: TrainConfig, pad_id: int, device: Any) -> float:
    """Σ w·CE / Σ w over --eval-data with the method's own weights (Rho-1 selects per batch, as in training)."""
    was_training = scorer.training
    scorer.eval()
    wp, num, den = weight_params(cfg), 0.0, 0.0
    for s in range(0, len(data.rows), cfg.batch_size):
        b = {k: v.to(device) for k, v in collate(data, list(range(s, min(s + cfg.batch_size, len(data.rows)))),
                                                  pad_id).items()}
        out = weighted_step(scorer, b, cfg.method, wp, 1.0)
        num, den = num + float((out.weights * -out.logp).sum()), den + float(out.weights.sum())
    scorer.train(was_training)
    return num / max(den, 1e-12)


def tracked(record: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in ("step", "seconds", "step_seconds") and isinstance(v, (int, float))}


def train(cfg: TrainConfig) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    t0 = time.time()
    out, stage = Path(cfg.out), staging_dir(cfg.out)
    check_out_dir(out, cfg.overwrite)
    if cfg.resume and not (stage / CHECKPOINT).is_dir():
        raise GiftError(f"--resume: no checkpoint in {stage}; start without --resume")
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              log_with=None if cfg.report_to == "none" else cfg.report_to, project_dir=str(stage))
    if accelerator.mixed_precision != "no" and "ACCELERATE_MIXED_PRECISION" not in os.environ:
        raise GiftError(f"an Accelerator created earlier in this process (a Trainer's, say) set mixed precision "
                        f"{accelerator.mixed_precision}, which gift train would inherit silently; run it in a fresh process")
    tokenizer = load_tokenizer(cfg.model)
    data = load_train_data(cfg, tokenizer)
    eval_data = load_train_data(cfg, tokenizer, cfg.eval_data) if cfg.eval_data else None
    world = accelerator.num_processes
    global_batch = cfg.batch_size * cfg.grad_accum * world
    per_epoch = math.ceil(len(data.rows) / global_batch)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))

    set_seed(cfg.seed)
    if cfg.dtype == "float16":
        raise GiftError("--dtype float16 is not supported for training: the step-normalised loss scales gradients by "
                        "1/Σw before backward and fp16 underflows without loss scaling; use bfloat16 or float32")
    model = build_lora(load_model(cfg.model, cfg.dtype, cfg.trust_pickle), cfg)
    if cfg.gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise GiftError(f"--gradient-checkpointing: {type(model.get_base_model()).__name__} does not support it in "
                            f"transformers; pass --no-gradient-checkpointing")
        # non-reentrant: gradients reach the LoRA weights without making the frozen embeddings' output require grad;
        # transformers renamed the call in 5.x (gradient_ → activation_checkpointing_enable)
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    mode = packing_mode(cfg.padding_free, model, data.rows, cfg.model)
    varlen, width = "flash" in str(model.config._attn_implementation), token_width(model.config)
    if accelerator.is_main_process and cfg.padding_free == "auto":
        print("padding-free batches: " + ("per step, where cheaper than padding" if mode == "cheaper"
                                          else "off (the probe found packed rows not kept apart)"))
    by_length = cfg.group_by_length and cfg.method != "rho"  # Rho-1 selects tokens within each micro-batch
    lengths = [len(r.input_ids) for r in data.rows]
    packed_steps = 0
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total), total)
    start = 0
    if cfg.resume:
        start = load_checkpoint(stage / CHECKPOINT, model, optimizer, scheduler, cfg, accelerator)
    elif accelerator.is_main_process:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if cfg.report_to != "none":
        hparams = {k: v for k, v in to_dict(cfg).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("tracker", config=hparams)  # tensorboard: OUT/tracker/
    scorer, optimizer = accelerator.prepare(GoldLogprobs(model), optimizer)
    scorer.train()
    wp = weight_params(cfg)
    log_path = stage / LOG
    if accelerator.is_main_process:
        kept = [ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] <= start] if cfg.resume else []
        log_path.write_text("".join(ln + "\n" for ln in kept))
        packed_steps = sum(bool(json.loads(ln)["packed"]) for ln in kept)  # the steps before a resume count too

    bar = tqdm(range(start, total), desc=f"train ({cfg.method})", unit="step", initial=start, total=total,
               disable=not accelerator.is_main_process)
    for step in bar:
        t_step = time.perf_counter()
        idx = step_indices(len(data.rows), step, global_batch, cfg.seed)
        mine = idx[accelerator.process_index::world]  # uneven at an epoch's end: the global normaliser keeps it exact
        idle = not mine  # fewer rows than processes: a zero-weight pass on one row keeps DDP's all-reduce in step
        groups, packed = step_layout(mine or idx[:1], lengths, cfg.batch_size, mode, by_length, width, varlen)
        packed_steps += packed
        micro = [collate(data, g, tokenizer.pad_token_id, packed) for g in groups]
        local = torch.zeros(()) if idle else sum(normaliser(cfg.method, b["q"], b["is_eot"], wp) for b in micro)
        denominator = accelerator.reduce(local.to(accelerator.device), "sum")
        stats = torch.zeros(5, device=accelerator.device)  # signal_stats summed over the step
        kl_sum = torch.zeros((), device=accelerator.device)  # ASFT's Σ KL(p_ref ‖ p_model)
        for j, b in enumerate(micro):
            b = {k: v.to(accelerator.device) for k, v in b.items()}
            with accelerator.no_sync(scorer) if j < len(micro) - 1 else nullcontext():
                mb = weighted_step(scorer, b, cfg.method, wp, denominator)
                loss, logp, w = mb.loss, mb.logp, mb.weights
                loss = loss * (0 if idle else world)  # DDP averages gradients over processes
                if not torch.isfinite(loss):
                    lines = sorted(data.rows[i].line for i in groups[j])
                    raise GiftError(f"non-finite loss at step {step + 1} (source lines {lines}); the last good "
                                    f"checkpoint is in {stage / CHECKPOINT}; lower --lr or fix those rows, then --resume")
                accelerator.backward(loss)
            if idle:
                continue
            stats += signal_stats(w, logp, b["q"])
            kl_sum += mb.kl.sum()
        grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        s, kl = accelerator.reduce(stats, "sum").tolist(), accelerator.reduce(kl_sum, "sum").item()
        record = {"step": step + 1, "loss": (s[0] + kl_alpha(cfg.method, wp) * kl) / denominator.item(),
                  "lr": scheduler.get_last_lr()[0],
                  "grad_norm": float(grad_norm), "mean_weight": s[1] / max(s[2], 1), "tokens": int(s[2]),
                  "low_conf_weight_share": s[3] / s[1] if data.conf is not None and s[1] else None,
                  "low_conf_loss_share": s[4] / s[0] if data.conf is not None and s[0] else None, "packed": packed,
                  **({"kl": kl / denominator.item()} if cfg.method == "asft" else {}),
                  "step_seconds": round(time.perf_counter() - t_step, 3), "seconds": round(time.time() - t0, 3)}
        if eval_data is not None and ((step + 1) % cfg.eval_steps == 0 or step + 1 == total):
            record["eval_loss"] = held_out_loss(scorer, eval_data, cfg, tokenizer.pad_token_id, accelerator.device)
        accelerator.log(tracked(record), step=step + 1)
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        if (step + 1) % cfg.save_steps == 0 and step + 1 < total:
            save_checkpoint(stage / CHECKPOINT, model, optimizer, scheduler, step + 1, cfg, accelerator)

    for tracker in accelerator.trackers:  # not end_training(): it would also tear down the process group
        tracker.finish()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(scorer).model.save_pretrained(stage)
        meta = {"gift_version": __version__, "config": to_dict(cfg), "steps": total, "global_batch": global_batch,
                "processes": world, "rows": len(data.rows), "filter_threshold": data.filter_threshold,
                "padding_free": mode, "packed_steps": packed_steps,
                "grouped_by_length": by_length,
                "vocab_fingerprint": data.vocab_fingerprint,
                "special_tokens": special_tokens(tokenizer), "data_sha256": data.data_sha256, "teacher": data.teacher,
                "eot_token_ids": sorted(data.eot_ids), "model_shape": model_shape(model.config),
                "seconds": round(time.time() - t0, 2)}
        (stage / TRAIN_META).write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(stage / CHECKPOINT, ignore_errors=True)
        publish(stage, out)
        print(f"trained {total} steps ({cfg.method}) in {time.time() - t0:.1f}s -> {out}")
    accelerator.wait_for_everyone()
    return out
