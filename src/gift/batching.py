"""How an optimiser step's rows become micro-batches: grouped by length and padded, or packed padding-free,
whichever an estimate of the work finds cheaper. Pure functions of row lengths; any layout gives the step's
gradient up to summation order, because gift divides the loss by the whole step's Σ w."""
from __future__ import annotations

from typing import Any


def longest_first(idx: list[int], lengths: list[int]) -> list[int]:
    """A step's rows ordered by length, longest first (the step's peak memory comes at once), before they are cut
    into micro-batches. This leaves the step's gradient unchanged because its loss is divided by the whole step's
    Σ w, not each micro-batch's; shared with gift.trl.GIFTTrainer."""
    return sorted(idx, key=lambda i: -lengths[i])


def layout_cost(groups: list[list[int]], lengths: list[int], packed: bool, width: float, varlen: bool) -> float:
    """Estimated work of a step's micro-batches, in units of one query-key pair of attention: each token's
    projections and MLP cost `width` such units, attention one per pair. Padded: B·L_max slots and B·L_max² pairs;
    packed: the real tokens, and the whole pack's square (sdpa and eager attend through a block-diagonal mask) or
    only each row's (flash-attention's varlen kernels)."""
    total = 0.0
    for g in groups:
        ls = [lengths[i] for i in g]
        if packed:
            total += width * sum(ls) + (sum(x * x for x in ls) if varlen else sum(ls) ** 2)
        else:
            total += width * len(ls) * max(ls) + len(ls) * max(ls) ** 2
    return total


def step_layout(mine: list[int], lengths: list[int], batch_size: int, mode: str, by_length: bool, width: float,
                varlen: bool) -> tuple[list[list[int]], bool]:
    """This process's rows of a step cut into micro-batches, and whether they are packed. Padded batches are grouped
    by length (`by_length`); packs keep the drawn order (no padding to save, and packing the longest rows together
    only adds attention work). "cheaper" picks the layout with the smaller layout_cost: on this CPU packing was
    2.4× slower a step on the bundled pair (32 short rows a micro-batch) and 1.6× faster on SmolLM2's long rows.
    Any layout gives the step's gradient up to summation order (the loss is divided by the step's Σ w)."""
    def cut(idx: list[int]) -> list[list[int]]:
        return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]

    padded = cut(longest_first(mine, lengths) if by_length else mine)
    if mode == "padded":
        return padded, False
    if mode == "packed":
        return cut(mine), True
    cheaper = layout_cost(cut(mine), lengths, True, width, varlen) < layout_cost(padded, lengths, False, width, varlen)
    return (cut(mine), True) if cheaper else (padded, False)


def token_width(config: Any) -> float:
    """A token's projection and MLP work over its attention work per key (8h² + 6h·i flops against 4h)."""
    cfg = config.get_text_config()
    return 2 * cfg.hidden_size + 1.5 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
