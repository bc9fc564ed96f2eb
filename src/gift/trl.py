"""GIFT inside TRL: `GIFTTrainer`, an `SFTTrainer` that trains with gift's token weights.

    from gift import load_annotations, GIFTCollator
    from gift.trl import GIFTTrainer

    train = load_annotations("ann/", tokenizer)           # from `gift annotate`
    trainer = GIFTTrainer(model=base, args=SFTConfig(...), train_dataset=train, processing_class=tokenizer,
                          peft_config=LoraConfig(...), method="gift")
    trainer.train()

TRL runs the loop and PEFT the adapter; this layer changes only what gift changes:
- the loss is Σ w·CE / Σ w with the denominator summed over the whole optimiser step: Trainer's
  `num_items_in_batch` mechanism (meant for token counts under gradient accumulation) carries Σ w instead;
- the loss goes through gift's fused weighted NLL, so no full-vocabulary logits are kept;
- rows are visited in gift train's order (one seeded permutation per epoch), so that with the same
  annotation, seed, LoRA settings, batch and steps the adapter equals `gift train`'s.
One process only for now: the fused loss runs the unwrapped model, which DDP would not synchronise;
use `accelerate launch gift train` on several devices.
"""
from __future__ import annotations

import json
from typing import Any

import torch
from trl import SFTConfig, SFTTrainer

from .batching import longest_first
from .data import Encoded, GIFTCollator
from .errors import GiftError
from .loss import GoldLogprobs, packing_refusal
from .train import epoch_permutation, weighted_step
from .weighting import METHODS, NEEDS_ANNOTATION, WeightParams, normaliser, signal_stats

__all__ = ["GIFTTrainer", "SFTConfig"]


def pad_id(processing_class: Any, args: SFTConfig) -> int:
    """The id the collator pads with, chosen as SFTTrainer chooses it: args.pad_token, else the tokenizer's pad,
    else its eos (Llama and Mistral base tokenizers have no pad; padded positions are masked out anyway)."""
    tok = getattr(processing_class, "tokenizer", processing_class)
    token = getattr(args, "pad_token", None) or tok.pad_token or tok.eos_token
    if token is None:
        raise GiftError("processing_class has neither a pad nor an eos token; set SFTConfig(pad_token=...)")
    return tok.convert_tokens_to_ids(token)


class GiftOrder(torch.utils.data.Sampler):
    """gift train's row order: epoch e visits the rows in epoch_permutation(n, seed, e); with `lengths`, the rows
    of each optimiser step (`step_rows` of them) come longest first, as gift train cuts them into micro-batches."""

    def __init__(self, n: int, seed: int, lengths: list[int] | None = None, step_rows: int = 1):
        self.n, self.seed, self.epoch, self.lengths, self.step_rows = n, seed, 0, lengths, step_rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = epoch_permutation(self.n, self.seed, self.epoch)
        self.epoch += 1
        if self.lengths is not None:
            order = [i for s in range(0, self.n, self.step_rows) for i in longest_first(order[s:s + self.step_rows],
                                                                                        self.lengths)]
        return iter(order)


class GIFTTrainer(SFTTrainer):
    """SFTTrainer with gift's weighted loss. `method`: gift (default), sft, dft, rho, eaft or asft; `gamma`,
    `floor`, `rho_ratio`, `eaft_alpha`, `eaft_topk` and `asft_alpha` as in `gift train` (asft needs a PEFT adapter:
    its reference is the model with the adapter off). The dataset comes from `gift.load_annotations` (sft, dft,
    eaft and asft also accept one without confidences); the collator defaults to GIFTCollator with the annotation's
    end-of-turn ids.
    `group_by_length` (default on; not for rho or packed batches) orders each optimiser step's rows by length before
    they are cut into micro-batches, which is exact because the loss is normalised over the step;
    `args.padding_free=True` packs each micro-batch into one row, after a probe shows the model keeps packed rows
    apart."""

    loss_is_scaled_for_ga = True  # compute_loss divides by the whole step's Σ w

    def __init__(self, model: Any, args: SFTConfig | None = None, *, method: str = "gift", gamma: float = 1.0,
                 floor: float = 1e-4, rho_ratio: float = 0.6, eaft_alpha: float = 1.0, eaft_topk: int = 20,
                 asft_alpha: float = 0.1, group_by_length: bool = True, **kwargs: Any):
        if method not in METHODS:
            raise GiftError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        args = args or SFTConfig(output_dir="gift_trainer_output")
        if args.train_sampling_strategy != "random":
            raise GiftError(f"train_sampling_strategy={args.train_sampling_strategy!r}: GIFTTrainer visits rows in gift "
                            f"train's seeded order (grouped by length within each step: group_by_length=True)")
        packed, args.padding_free = args.padding_free, False  # TRL refuses a custom collator with padding_free
        args.remove_unused_columns = False  # the collator needs `confidence`
        args.dataset_kwargs = {**(args.dataset_kwargs or {}), "skip_prepare_dataset": True}  # already tokenised
        train = kwargs.get("train_dataset")
        if method in NEEDS_ANNOTATION and train is not None and "confidence" not in (train.column_names or []):
            raise GiftError(f"method={method!r} needs teacher confidences, and train_dataset has no `confidence` column "
                            f"(it would train plain SFT); load a gift annotate directory with gift.load_annotations")
        if train is not None and kwargs.get("data_collator") is None:
            meta = json.loads(train.info.description or "{}")
            if "eot_token_ids" not in meta:
                raise GiftError("train_dataset: load it with gift.load_annotations (it carries the end-of-turn ids), "
                                "or pass data_collator=GIFTCollator(pad_token_id, eot_token_ids)")
            kwargs["data_collator"] = GIFTCollator(pad_id(kwargs["processing_class"], args), meta["eot_token_ids"],
                                                   packed)
        elif packed and not getattr(kwargs.get("data_collator"), "padding_free", False):
            raise GiftError("padding_free=True with a data_collator that pads; pass GIFTCollator(..., padding_free=True)")
        # a collator that packs packs whatever the config says: the probe must run for it too
        packed = packed or bool(getattr(kwargs.get("data_collator"), "padding_free", False))
        self.method, self.weights = method, WeightParams(gamma, floor, rho_ratio, eaft_alpha, eaft_topk, asft_alpha)
        # as gift train: not for rho (its selection is per micro-batch) nor for packed batches (no padding to save)
        self.group_by_length = group_by_length and method != "rho" and not packed
        self._stats = torch.zeros(5)  # signal_stats summed since the last log
        super().__init__(model, args, **kwargs)
        if self.accelerator.num_processes > 1:
            raise GiftError("GIFTTrainer runs on one process; on several devices use `accelerate launch gift train`")
        self._scorer = GoldLogprobs(self.accelerator.unwrap_model(self.model))
        if method == "asft":  # refused here rather than at the first step
            self._scorer.require_reference()
        if packed and train is not None:
            probe = [Encoded(list(r["input_ids"]), list(r["labels"])) for r in train.select(range(min(8, len(train))))]
            refusal = packing_refusal(self._scorer.model, probe)
            if refusal:
                raise GiftError(f"padding_free=True: this model's attention does not keep packed rows apart ({refusal})")

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler:
        data = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in data["input_ids"]] if self.group_by_length else None
        return GiftOrder(len(data), self.args.seed, lengths,
                         self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """The optimiser step's denominator: Σ w over its micro-batches (tokens for sft/dft, kept tokens for rho)."""
        if not batch_samples or "q" not in batch_samples[0]:
            return None
        total = sum(normaliser(self.method, b["q"], b["is_eot"], self.weights) for b in batch_samples)
        return torch.as_tensor(total, dtype=torch.float32, device=device)

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None) -> Any:
        q, is_eot = inputs["q"], inputs["is_eot"]
        denominator = num_items_in_batch if num_items_in_batch is not None else \
            normaliser(self.method, q, is_eot, self.weights).to(q.device)
        out = weighted_step(self._scorer, inputs, self.method, self.weights, denominator)
        loss, logp = out.loss, out.logp
        if model.training:
            self._stats += signal_stats(out.weights, logp, q).detach().cpu()
        return (loss, {"logp": logp}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds gift's figures to each training log: mean token weight and the low-confidence shares."""
        s = self._stats.tolist()
        if "loss" in logs and s[2]:
            logs.update(mean_weight=s[1] / s[2], low_conf_weight_share=s[3] / s[1] if s[1] else 0.0,
                        low_conf_loss_share=s[4] / s[0] if s[0] else 0.0)
            self._stats.zero_()
        super().log(logs, *args, **kwargs)
