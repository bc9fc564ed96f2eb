"""Token weights for each training method, and the normaliser each one divides by.

All functions take flat tensors over the labelled tokens of a micro-batch:
`q` the teacher's confidence p_teacher(y_t | x, y_<t) (ones where no annotation exists),
`is_eot` the end-of-turn positions, `logp` the training model's own log-probability (detached).

| method | weight w_t                          | normaliser (summed over the optimiser step) |
| sft    | 1                                   | number of tokens                            |
| gift   | max(q, floor)^γ, 1 at end-of-turn   | Σ w_t                                       |
| dft    | p_model(y_t), detached              | number of tokens (as in the DFT paper)      |
| rho    | 1 on the top-k share by excess loss | number of selected tokens                   |
| eaft   | (H_top-k(p_model) / ln k)^α, detached | number of tokens (as LLaMA-Factory's)     |
| asft   | DFT's, plus α·KL(p_ref ‖ p_model) per token | number of tokens                    |

dft, eaft and asft weigh by the training model's own distribution, so their weights are formed inside the forward
pass (`self_weights`, from each chunk's logits); ASFT's reference is the starting model (for an adapter: the model
with the adapter switched off). EAFT's entropy is that of the renormalised top-k of the model's next-token
distribution; LLaMA-Factory divides it by 3.0 for its fixed k = 20 (ln 20 = 2.996), gift by ln k for any k.

Rho-1's excess loss is CE_model − CE_reference; the teacher plays the reference: −log p + log q.
Its selection is per micro-batch, as in Rho-1; its normaliser is known before the forward pass.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

METHODS = ("sft", "gift", "dft", "rho", "eaft", "asft")
NEEDS_ANNOTATION = {"gift", "rho"}
SELF_WEIGHTED = {"dft", "eaft", "asft"}  # weights from the training model's own distribution (self_weights)


@dataclass(frozen=True)
class WeightParams:
    gamma: float = 1.0
    floor: float = 1e-4  # the published code's floor on q
    rho_ratio: float = 0.6  # share of tokens Rho-1 keeps
    eaft_alpha: float = 1.0  # EAFT's exponent on the normalised entropy (LLaMA-Factory's default)
    eaft_topk: int = 20  # EAFT's entropy over the model's k likeliest next tokens (LLaMA-Factory's fixed 20)
    asft_alpha: float = 0.1  # ASFT's weight on KL(p_ref ‖ p_model) (LLaMA-Factory's default)


def gift_weights(q: Tensor, is_eot: Tensor, p: WeightParams) -> Tensor:
    w = q.clamp_min(p.floor).pow(p.gamma)
    return torch.where(is_eot, torch.ones_like(w), w)  # the published code gives end-of-turn weight 1


def rho_keep(n: int, p: WeightParams) -> int:
    return math.ceil(p.rho_ratio * n) if n else 0


def eaft_weights(logits: Tensor, p: WeightParams) -> Tensor:
    """(H / ln k)^α of each row's renormalised top-k distribution; logits (n, V) float32, no gradient."""
    k = min(p.eaft_topk, logits.shape[-1])
    top = logits.detach().topk(k, dim=-1).values  # (n, k)
    logq = top - top.logsumexp(dim=-1, keepdim=True)
    return (-(logq.exp() * logq).sum(dim=-1) / math.log(k)).pow(p.eaft_alpha)


def self_weights(method: str, logits: Tensor, logp: Tensor, p: WeightParams) -> Tensor:
    """w_t of the self-weighted methods from the model's own logits (n, V) and gold log-probabilities (n,)."""
    if method == "eaft":
        return eaft_weights(logits, p)
    if method in ("dft", "asft"):  # ASFT's token term is DFT's
        return logp.detach().exp()
    raise ValueError(f"{method!r} is not weighted by the model's own distribution; expected one of {SELF_WEIGHTED}")


def weigher(method: str, p: WeightParams) -> Callable[[Tensor, Tensor], Tensor] | None:
    """self_weights bound to a self-weighted method, for the loss to call on each chunk's logits; else None."""
    return (lambda logits, logp: self_weights(method, logits, logp, p)) if method in SELF_WEIGHTED else None


def kl_alpha(method: str, p: WeightParams) -> float:
    """The weight on KL(p_ref ‖ p_model) in the loss: ASFT's α, 0 for every other method."""
    return p.asft_alpha if method == "asft" else 0.0


def normaliser(method: str, q: Tensor, is_eot: Tensor, p: WeightParams) -> Tensor:
    """This micro-batch's share of the step's denominator; needs no forward pass."""
    if method == "gift":
        return gift_weights(q, is_eot, p).sum()
    if method == "rho":
        return torch.tensor(float(rho_keep(q.numel(), p)))
    return torch.tensor(float(q.numel()))


def token_weights(method: str, q: Tensor, is_eot: Tensor, logp: Tensor | None, p: WeightParams) -> Tensor:
    """w_t for each labelled token; `logp` must already be detached (sft and gift do not need it)."""
    if method == "sft":
        return torch.ones_like(q)
    if method == "gift":
        return gift_weights(q, is_eot, p)
    if method in ("dft", "asft"):
        return logp.exp()
    if method == "rho":
        excess = -logp + q.clamp_min(p.floor).log()
        keep = torch.zeros_like(logp)
        keep[excess.topk(rho_keep(logp.numel(), p)).indices] = 1.0
        return keep
    if method == "eaft":
        raise ValueError("eaft's weights need the model's logits: use self_weights")
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def teacher_filter(conf: list[list[float]], labelled: list[list[bool]], keep: float, floor: float
                   ) -> tuple[list[int], float]:
    """The teacher-filter baseline's rows: the `keep` share (rounded up) with the highest mean log max(q, floor) over
    their labelled tokens, in data order, and the threshold that share puts on that mean (ties at it keep the earlier
    rows, so the count is exact)."""
    scores = torch.tensor([float(torch.tensor([q for q, y in zip(c, m) if y]).clamp_min(floor).log().mean())
                           for c, m in zip(conf, labelled)])
    order = torch.sort(scores, descending=True, stable=True).indices[:math.ceil(keep * len(scores))]  # ties: data order
    return sorted(order.tolist()), float(scores[order[-1]]) if len(order) else float("nan")


def signal_stats(w: Tensor, logp: Tensor, q: Tensor) -> Tensor:
    """[Σ w·CE, Σ w, tokens, Σ w on q < 0.5, Σ w·CE on q < 0.5] of a micro-batch: summed over a step, they give
    its loss, mean weight and the share of weight and of weighted loss on tokens the teacher finds unlikely."""
    wce, low = w * -logp.detach(), q < 0.5
    return torch.stack([wce.sum(), w.sum(), torch.tensor(float(w.numel()), device=w.device), w[low].sum(),
                        wce[low].sum()])
