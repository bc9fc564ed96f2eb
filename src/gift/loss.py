"""Gold-token log-probabilities without a full-vocabulary softmax, and the weighted token loss.

Only labelled positions go through the output layer, in chunks of rows, so at most a (chunk, vocab)
block of logits exists at a time. Two paths:
- gold_logprobs: log p of each gold token (annotation, evaluation, Rho-1); under autograd each chunk
  is checkpointed, so the backward pass recomputes its logits instead of keeping them;
- FusedWeightedNLL: the training loss when the token weights are known before the forward pass
  (sft, gift) or formed from each chunk's own logits (dft, eaft; asft adds a KL term to a reference's
  distribution): the gradient is computed chunk by chunk in the forward pass, so logits are neither
  kept nor recomputed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .data import IGNORE, Encoded, pack_batch, pad_batch
from .errors import GiftError

LOGITS_BUDGET = 2**24  # elements of one chunk's logits (64 MB in float32): rows per chunk = budget // vocab
# config attributes by which transformers changes logits after the output layer (Gemma-2 soft-capping, Cohere
# and Granite scaling, MiniCPM/muP width scaling); a model with any of them set goes through its own forward
HEAD_TRANSFORMS = {"final_logit_softcapping": None, "logit_scale": None, "logits_scaling": 1.0,
                   "dim_model_base": None, "mup_width_multiplier": None}


def plain_head(model: nn.Module) -> bool:
    """True when the logits are exactly `hidden @ W.T (+ b)` of a plain nn.Linear output layer: no head
    transform in the config and no adapter (e.g. LoRA on lm_head) wrapped around the layer."""
    cfg = model.config.get_text_config()
    if any(getattr(cfg, name, neutral) not in (None, neutral) for name, neutral in HEAD_TRANSFORMS.items()):
        return False
    return type(model.get_output_embeddings()) is nn.Linear


def rows_per_chunk(vocab: int) -> int:
    return max(1, LOGITS_BUDGET // vocab)


def _chunk_logprobs(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    logits = F.linear(hidden, weight, bias).float()  # (n, V); float32 so logsumexp is exact enough in bf16 runs
    return logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def gold_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None,
                  chunk_size: int | None = None) -> Tensor:
    """log softmax(hidden @ weight.T + bias)[target] for each row of hidden (N, H); returns (N,) float32."""
    chunk_size = chunk_size or rows_per_chunk(weight.shape[0])
    out = []
    for s in range(0, hidden.shape[0], chunk_size):
        args = (hidden[s:s + chunk_size], weight, bias, targets[s:s + chunk_size])
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            out.append(checkpoint(_chunk_logprobs, *args, use_reentrant=False))
        else:
            out.append(_chunk_logprobs(*args))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def gold_logprobs_from_logits(logits: Tensor, targets: Tensor, chunk_size: int | None = None) -> Tensor:
    """The same from precomputed logits (N, V), for models whose head is more than a linear layer."""
    chunk_size = chunk_size or rows_per_chunk(logits.shape[1])
    out = [
        logits[s:s + chunk_size].float().gather(1, targets[s:s + chunk_size, None]).squeeze(1)
        - torch.logsumexp(logits[s:s + chunk_size].float(), dim=-1)
        for s in range(0, logits.shape[0], chunk_size)
    ]
    return torch.cat(out) if out else logits.new_zeros(0, dtype=torch.float32)


class Weighted(NamedTuple):
    """The weighted loss of a micro-batch and its detached per-token parts: log p_t, the weight w_t (before the
    step's scale) and ASFT's KL(p_ref ‖ p_model) per token (zeros for every other method)."""

    loss: Tensor
    logp: Tensor
    weights: Tensor
    kl: Tensor


Weigh = Callable[[Tensor, Tensor], Tensor]  # (logits (n, V) float32, log p_t (n,)) -> w_t (n,), detached


def chunk_loss(logits: Tensor, targets: Tensor, coef: Tensor | None, weigh: Weigh | None, ref_logits: Tensor | None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One chunk's (Σ w·(−log p), Σ KL, log p, w, KL) from its logits (n, V) float32, differentiable in the logits:
    the weights are detached, the KL is KL(softmax(ref_logits) ‖ softmax(logits)) per row."""
    logp_full = logits.log_softmax(dim=-1)
    lp = logp_full.gather(1, targets[:, None]).squeeze(1)
    w = weigh(logits.detach(), lp.detach()) if weigh is not None else coef
    kl = logits.new_zeros(len(targets))
    if ref_logits is not None:
        ref = ref_logits.float().log_softmax(dim=-1)
        kl = (ref.exp() * (ref - logp_full)).sum(dim=-1)
    return -(w * lp).sum(), kl.sum(), lp, w, kl


class FusedWeightedNLL(torch.autograd.Function):
    """Σ c_t·(−log p_t) + a·Σ KL_t through the output layer, chunk by chunk, with the gradient computed in the forward
    pass (the coefficients are known then), so no logits are kept or recomputed. c_t = coef_t·scale, or
    weigh(logits, log p)·scale (DFT, EAFT: detached); the KL term (ASFT, a = kl_alpha·scale) compares with the
    reference's hidden states through the same output layer. Returns (loss, log p, w, KL), the last three detached."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, coef: Tensor | None, scale: Tensor | float,
                weigh: Weigh | None, ref_hidden: Tensor | None, kl_alpha: float, chunk_size: int
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        n = hidden.shape[0]
        logp, weights, kls = (hidden.new_empty(n, dtype=torch.float32) for _ in range(3))
        loss = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, n, chunk_size):
            h, t = hidden[s:s + chunk_size], targets[s:s + chunk_size]
            # chunk_loss's sums, written out so that the chunk's logits are the one (n, V) block (the hot path)
            logits = F.linear(h, weight).float()  # (n, V)
            lse = logits.logsumexp(dim=-1)
            lp = logits.gather(1, t[:, None]).squeeze(1) - lse
            w = weigh(logits, lp) if weigh is not None else coef[s:s + chunk_size]
            c, a = w * scale, kl_alpha * scale
            loss = loss - (c * lp).sum()
            g = logits.sub_(lse[:, None])  # log-softmax, in place of the logits
            kl_t = torch.zeros_like(lp)
            if ref_hidden is not None:
                ref = F.linear(ref_hidden[s:s + chunk_size], weight).float().log_softmax(dim=-1)  # (n, V)
                kl_t = (ref.exp() * (ref - g)).sum(dim=-1)
                loss = loss + a * kl_t.sum()
            logp[s:s + chunk_size], weights[s:s + chunk_size], kls[s:s + chunk_size] = lp, w, kl_t
            g.exp_().mul_((c + a)[:, None] if ref_hidden is not None else c[:, None])  # softmax, scaled
            g[torch.arange(len(t), device=g.device), t] -= c  # d/d logits: c·(softmax − onehot) + a·(softmax − p_ref)
            if ref_hidden is not None:
                g.sub_(ref.exp_().mul_(a))
            if grad_h is not None:
                grad_h[s:s + chunk_size] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(g.t(), h.float())
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(logp, weights, kls)
        return loss, logp, weights, kls

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *_grad_parts: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_loss if grad_h is not None else None,
                (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None,
                None, None, None, None, None, None, None)


class GoldLogprobs(nn.Module):
    """Wraps a causal LM: forward(input_ids, attention_mask, labels) -> log p(label) at every labelled
    position, in row-major order. A module of its own so DDP/FSDP wrap it like the model itself."""

    def __init__(self, model: nn.Module, chunk_size: int | None = None):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        # a head that is more than a plain linear layer goes through the model's own logits
        self.plain_head = plain_head(self.causal_lm)
        self.fusable = self.plain_head and self.causal_lm.get_output_embeddings().bias is None

    @property
    def causal_lm(self) -> nn.Module:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def require_reference(self) -> None:
        """ASFT's reference is the model with its adapter switched off: refuse a model that has none."""
        if not hasattr(self.model, "disable_adapter"):
            raise GiftError("asft's reference is the model with its adapter switched off: train a PEFT adapter "
                            "(LoRA), not the whole model")

    @torch.no_grad()
    def reference(self, inputs: dict[str, Any], hidden: bool) -> Tensor:
        """The starting model's decoder output (hidden) or logits: the model with its adapter switched off, in eval
        mode (ASFT's frozen reference, without a second copy of the model)."""
        self.require_reference()
        was_training = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                lm = self.causal_lm
                return lm.get_decoder()(**inputs).last_hidden_state if hidden else lm(**inputs).logits
        finally:
            self.model.train(was_training)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor, coef: Tensor | None = None,
                scale: Tensor | float = 1.0, weigh: Weigh | None = None, kl_alpha: float = 0.0,
                position_ids: Tensor | None = None) -> Tensor | Weighted:
        """log p of every labelled token; or, given coefficients (or `weigh`, the self-weighted methods' weights
        from the logits), the weighted loss Σ c·(−log p) + kl_alpha·scale·Σ KL(p_ref ‖ p) as `Weighted`. A packed
        batch (data.pack_batch) comes with position_ids and no attention_mask."""
        targets_mask = labels[:, 1:] != IGNORE  # (B, T-1): position t predicts token t+1
        targets = labels[:, 1:][targets_mask]
        lm = self.causal_lm
        # use_cache=False: with a cache transformers ignores the packing in position_ids (and keeps keys/values)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  "use_cache": False}
        if coef is not None or weigh is not None:
            if self.fusable:
                hidden = lm.get_decoder()(**inputs).last_hidden_state
                ref = self.reference(inputs, hidden=True)[:, :-1][targets_mask] if kl_alpha else None
                weight = lm.get_output_embeddings().weight
                return Weighted(*FusedWeightedNLL.apply(hidden[:, :-1][targets_mask], weight, targets, coef, scale,
                                                        weigh, ref, kl_alpha,
                                                        self.chunk_size or rows_per_chunk(weight.shape[0])))
            # a head that is more than a plain linear layer: the model's own logits, under autograd
            if weigh is None and not kl_alpha:
                logp = self(input_ids, attention_mask, labels, position_ids=position_ids)
                return Weighted(-(coef * scale * logp).sum(), logp.detach(), coef, torch.zeros_like(coef))
            logits = lm(**inputs).logits[:, :-1][targets_mask].float()  # (N, V)
            ref = self.reference(inputs, hidden=False)[:, :-1][targets_mask] if kl_alpha else None
            part, kl, lp, w, kl_t = chunk_loss(logits, targets, coef, weigh, ref)
            return Weighted(part * scale + kl_alpha * scale * kl, lp.detach(), w, kl_t.detach())
        if self.plain_head:
            hidden = lm.get_decoder()(**inputs).last_hidden_state
            head = lm.get_output_embeddings()
            return gold_logprobs(hidden[:, :-1][targets_mask], head.weight, targets, head.bias, self.chunk_size)
        logits = lm(**inputs).logits
        return gold_logprobs_from_logits(logits[:, :-1][targets_mask], targets, self.chunk_size)


# a packed forward that leaks between rows moves hidden states by their own scale; rounding moves them by this much
PACKING_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 5e-2}


@torch.no_grad()
def packing_deviation(model: nn.Module, rows: list[Encoded], probe_length: int = 48) -> float:
    """max |h_packed − h_padded| / max |h_padded| of the decoder's output over two rows' first tokens (of unequal
    lengths, so the padded layout pads): the probe that decides whether a model's attention keeps packed rows
    apart. Some do not, or not in every setting (a cache, say), and then a packed batch would be silently wrong."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, was_training = lm.get_decoder(), model.training
    by_length = sorted(rows, key=lambda r: len(r.input_ids))
    pair = [by_length[-1], by_length[0]]
    probe = [Encoded(r.input_ids[:n], r.labels[:n]) for r, n in zip(pair, (probe_length, probe_length * 2 // 3))]
    device = next(model.parameters()).device
    padded = {k: v.to(device) for k, v in pad_batch(probe, 0).items() if k != "labels"}
    packed = {k: v.to(device) for k, v in pack_batch(probe).items() if k != "labels"}
    model.eval()
    try:
        h_pad = decoder(**padded, use_cache=False).last_hidden_state.float()
        h_pack = decoder(**packed, use_cache=False).last_hidden_state.float()[0]
    finally:
        model.train(was_training)
    real = torch.cat([h_pad[i, :len(r.input_ids)] for i, r in enumerate(probe)])
    return float((h_pack - real).abs().max() / real.abs().max().clamp_min(1e-12))


def packing_refusal(model: nn.Module, rows: list[Encoded]) -> str | None:
    """Why packed batches would be wrong for this model (the probe's deviation beyond rounding), or None."""
    deviation = packing_deviation(model, rows)
    if deviation <= PACKING_TOLERANCE.get(model.dtype, 1e-3):
        return None
    return f"hidden states differ by {deviation:.2g} of their scale from the padded batch"


def weighted_nll(logp: Tensor, weights: Tensor, denominator: Tensor | float) -> Tensor:
    """Σ w·(−log p) / denominator; the denominator is the whole optimiser step's, not this micro-batch's."""
    return -(weights * logp).sum() / denominator
