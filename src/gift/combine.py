"""Pure tensor maths of gift merge: task vectors combined over the base model (TIES, DARE), and how much of a
merge's change to the instruct model survives the cast to the saved dtype.

`--combine` follows mergekit's GeneralizedTaskArithmeticMerge (mergekit/merge_methods/generalized_task_arithmetic.py
and mergekit/sparsify.py), written here rather than imported because mergekit merges whole models from a YAML plan
and gift streams one tensor at a time inside its own merge. Two task vectors over the base weights W_B: the chat
vector W_I − W_B (weight 1) and the adapter's (α/r)·B·A (weight λ), as a mergekit user writes the instruct model and
the adapter merged into base with weights 1 and λ. Each is sparsified (TIES: keep the largest-magnitude `density`
share; DARE: keep each entry with probability `density`, then rescale to the L1 norm before dropping, as mergekit
does; the DARE paper divides by density, equal in expectation), weighted, and for the *_ties methods kept only where
its sign agrees with the sign of the weighted sum. `normalize` divides by the kept weights' sum (mergekit's default
for ties: it rescales the instruct model's own chat vector, so gift leaves it off unless asked).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

COMBINES = ("linear", "ties", "dare_ties", "dare_linear")
RESCALE_EPS = 1e-7  # mergekit's: below this norm a dropped-out vector is left unrescaled


def tensor_seed(seed: int, name: str) -> int:
    """A DARE mask's seed for one tensor, from the run's seed and the tensor's name (not from the order tensors are
    visited in, so that a merge is the same however its shards are laid out)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


def sparsify(delta: Tensor, density: float, method: str, generator: torch.Generator | None) -> Tensor:
    """TIES' magnitude trim or DARE's random drop with L1 rescale, as mergekit's sparsify (float32 in and out)."""
    if density >= 1:
        return delta
    if method == "ties":
        if density <= 0 or delta.numel() == 0:
            return torch.zeros_like(delta)
        k = max(1, int(density * delta.numel()))
        mask = torch.zeros(delta.numel(), dtype=delta.dtype)
        mask[torch.argsort(delta.abs().reshape(-1), descending=True)[:k]] = 1
        return delta * mask.reshape_as(delta)
    mask = torch.bernoulli(torch.full_like(delta, density), generator=generator)
    kept = delta * mask
    before, after = delta.abs().sum(), kept.abs().sum()
    return kept if before < RESCALE_EPS or after < RESCALE_EPS else kept * (before / after)


def combine(base: Tensor, chat: Tensor, task: Tensor, scale: float, method: str, density: float, normalize: bool,
            generator: torch.Generator | None = None) -> Tensor:
    """W_B + the combination of the chat vector (weight 1) and the task vector (weight λ = scale), float32."""
    sparse = "ties" if method == "ties" else "dare"
    deltas = torch.stack([sparsify(chat, density, sparse, generator), sparsify(task, density, sparse, generator)])
    weights = torch.tensor([1.0, scale]).reshape(2, *[1] * base.dim())
    deltas = deltas * weights
    if method in ("ties", "dare_ties"):
        majority = torch.where(deltas.sum(dim=0) >= 0, 1.0, -1.0)
        mask = (deltas.sign() == majority).to(deltas.dtype)
        mixed, divisor = (deltas * mask).sum(dim=0), (weights * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed, divisor = deltas.sum(dim=0), 1.0 + scale
        divisor = 1.0 if abs(divisor) < 1e-8 else divisor
    return base + (mixed / divisor if normalize else mixed)


def family(name: str) -> str:
    """The projection a weight belongs to (q_proj, down_proj, input_layernorm, ...), by which rounding is reported."""
    return name.removesuffix(".weight").rsplit(".", 1)[-1]


@dataclass
class Survival:
    """Σ <R, D>, Σ |D|² and Σ |R − D|² per family, where D is a merge's intended change to the instruct model
    (float32) and R the change the saved tensors hold against the instruct model saved in the same dtype.
    <R, D>/|D|² is the share of D that survives the cast: 1 when nothing is lost, 0 when rounding swallows it all
    (rounding up as often as down, it can come out a little above 1); |R − D|/|D| is the cast's relative error."""

    sums: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, instruct: Tensor, merged: Tensor, saved: Tensor) -> None:
        """`merged` the float32 value intended, `saved` the tensor as written (its dtype is the saved one)."""
        intended = merged - instruct.float()
        realised = saved.float() - instruct.to(saved.dtype).float()
        s = self.sums.setdefault(family(name), [0.0, 0.0, 0.0])
        s[0] += float((realised * intended).sum())
        s[1] += float((intended * intended).sum())
        s[2] += float(((realised - intended) ** 2).sum())

    def shares(self) -> dict[str, dict[str, float]]:
        """{family: {"kept": surviving share, "error": relative error}, ..., "overall": ...} over the families that
        changed."""
        total = [sum(s[i] for s in self.sums.values()) for i in range(3)]
        rows = {**dict(sorted(self.sums.items())), "overall": total}
        return {f: {"kept": dot / norm, "error": math.sqrt(err / norm)} for f, (dot, norm, err) in rows.items()
                if norm > 0}
