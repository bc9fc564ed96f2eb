"""Gold-token log-probabilities without a full-vocabulary softmax, and the weighted token loss.

Only labelled positions go through the output layer, in chunks of rows, so at most a
(chunk, vocab) block of logits exists at a time; under autograd each chunk is checkpointed,
so the backward pass recomputes it instead of keeping every chunk's logits alive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .data import IGNORE

LOGITS_BUDGET = 2**24  # elements of one chunk's logits (64 MB in float32): rows per chunk = budget // vocab


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


class GoldLogprobs(nn.Module):
    """Wraps a causal LM: forward(input_ids, attention_mask, labels) -> log p(label) at every labelled
    position, in row-major order. A module of its own so DDP/FSDP wrap it like the model itself."""

    def __init__(self, model: nn.Module, chunk_size: int | None = None):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        cfg = self.causal_lm.config.get_text_config()
        # Heads with soft-capping or scaling are not a plain linear layer: use the model's own logits.
        self.plain_head = getattr(cfg, "final_logit_softcapping", None) is None and not hasattr(cfg, "logit_scale")

    @property
    def causal_lm(self) -> nn.Module:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
        targets_mask = labels[:, 1:] != IGNORE  # (B, T-1): position t predicts token t+1
        targets = labels[:, 1:][targets_mask]
        lm = self.causal_lm
        if self.plain_head:
            hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            head = lm.get_output_embeddings()
            return gold_logprobs(hidden[:, :-1][targets_mask], head.weight, targets, head.bias, self.chunk_size)
        logits = lm(input_ids=input_ids, attention_mask=attention_mask).logits
        return gold_logprobs_from_logits(logits[:, :-1][targets_mask], targets, self.chunk_size)


def weighted_nll(logp: Tensor, weights: Tensor, denominator: Tensor | float) -> Tensor:
    """Σ w·(−log p) / denominator; the denominator is the whole optimiser step's, not this micro-batch's."""
    return -(weights * logp).sum() / denominator
