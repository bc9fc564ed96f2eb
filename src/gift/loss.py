"""Gold-token log-probabilities without a full-vocabulary softmax, and the weighted token loss.

Only labelled positions go through the output layer, in chunks of rows, so at most a (chunk, vocab)
block of logits exists at a time. Two paths:
- gold_logprobs: log p of each gold token (annotation, evaluation, Rho-1); under autograd each chunk
  is checkpointed, so the backward pass recomputes its logits instead of keeping them;
- FusedWeightedNLL: the training loss when the token weights are known before the forward pass
  (sft, gift; dft forms them inside): the gradient is computed chunk by chunk in the forward pass,
  so logits are neither kept nor recomputed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .data import IGNORE, Encoded, pack_batch, pad_batch

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


class FusedWeightedNLL(torch.autograd.Function):
    """Σ c_t·(−log p_t) through the output layer, chunk by chunk, with the gradient computed in the forward
    pass (the coefficients are known then), so no logits are kept or recomputed. c_t = coef_t·scale, or
    p_t·scale (detached) when `self_weighted` (DFT). Returns (loss, log p_t detached)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, coef: Tensor | None, scale: Tensor | float,
                self_weighted: bool, chunk_size: int) -> tuple[Tensor, Tensor]:
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        logp = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        loss = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, hidden.shape[0], chunk_size):
            h, t = hidden[s:s + chunk_size], targets[s:s + chunk_size]
            logits = F.linear(h, weight).float()  # (n, V)
            lse = torch.logsumexp(logits, dim=-1)
            lp = logits.gather(1, t[:, None]).squeeze(1) - lse
            c = (lp.exp() if self_weighted else coef[s:s + chunk_size]) * scale
            logp[s:s + chunk_size], loss = lp, loss - (c * lp).sum()
            g = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            g[torch.arange(len(t), device=g.device), t] -= 1.0
            g.mul_(c[:, None])  # d loss / d logits = c·(softmax − onehot)
            if grad_h is not None:
                grad_h[s:s + chunk_size] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(g.t(), h.float())
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(logp)
        return loss, logp

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_logp: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_loss if grad_h is not None else None,
                (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None,
                None, None, None, None, None)


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

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor, coef: Tensor | None = None,
                scale: Tensor | float = 1.0, self_weighted: bool = False,
                position_ids: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """log p of every labelled token; or, given coefficients (or self_weighted), the fused weighted NLL
        Σ c·(−log p) and the detached log p (see FusedWeightedNLL). A packed batch (data.pack_batch) comes with
        position_ids and no attention_mask."""
        targets_mask = labels[:, 1:] != IGNORE  # (B, T-1): position t predicts token t+1
        targets = labels[:, 1:][targets_mask]
        lm = self.causal_lm
        # use_cache=False: with a cache transformers ignores the packing in position_ids (and keeps keys/values)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  "use_cache": False}
        fused = coef is not None or self_weighted
        if fused and self.fusable:
            hidden = lm.get_decoder()(**inputs).last_hidden_state
            weight = lm.get_output_embeddings().weight
            return FusedWeightedNLL.apply(hidden[:, :-1][targets_mask], weight, targets, coef, scale, self_weighted,
                                          self.chunk_size or rows_per_chunk(weight.shape[0]))
        if fused:  # a head that is more than a plain linear layer: the unfused loss
            logp = self(input_ids, attention_mask, labels, position_ids=position_ids)
            c = (logp.detach().exp() if self_weighted else coef) * scale
            return -(c * logp).sum(), logp.detach()
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
