"""Test-time scaling metrics over n samples per problem, with bootstrap confidence intervals.

- Avg@k: mean accuracy of the first k samples.
- maj@k: the majority answer among the first k samples (normalised answers; ties go to the answer
  that appeared first; no answer never wins) is correct.
- pass@k: the unbiased estimator 1 − C(n−c, k)/C(n, k) of at least one of k samples being correct
  (Chen et al., 2021), not "any of the first k".
"""
from __future__ import annotations

from collections import Counter

import numpy as np

CI_RESAMPLES = 2000


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for c correct out of n samples; computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority(answers: list[str | None]) -> int | None:
    """Index of the first sample carrying the most frequent answer (None answers never win)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else ks + [n]


def bootstrap_ci(values: np.ndarray, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap over problems of the mean of per-problem scores."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(CI_RESAMPLES, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def metric(values: np.ndarray, seed: int = 0) -> dict[str, float | list[float]]:
    """Mean, 95% bootstrap interval over problems, and the per-problem scores (for pooling over seeds)."""
    lo, hi = bootstrap_ci(values, seed)
    return {"value": float(np.mean(values)), "ci": [lo, hi], "scores": [round(float(v), 6) for v in values]}


def seed_problem_ci(scores: list[np.ndarray], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap for a mean over seeds of per-problem scores, in a crossed design: each replicate
    draws one resample of the problems and one of the seeds, and applies that problem resample to every drawn
    seed, since every seed is scored on the same problems. The interval carries the training-seed and the
    problem variance (drawing problems anew per seed would shrink the problem variance by √seeds: five copies
    of one seed must give one seed's interval, and do, draw for draw). `scores`: one array per seed, aligned."""
    x = np.stack([np.asarray(s, dtype=float) for s in scores])
    n_seeds, n_problems = x.shape
    rng = np.random.default_rng(seed)
    problems = rng.integers(0, n_problems, size=(CI_RESAMPLES, n_problems))  # the same draws as bootstrap_ci
    seeds = rng.integers(0, n_seeds, size=(CI_RESAMPLES, n_seeds))
    weights = np.stack([np.bincount(s, minlength=n_seeds) for s in seeds]) / n_seeds  # (R, seeds)
    per_problem = weights @ x  # (R, problems): each replicate's mean over its drawn seeds
    means = np.take_along_axis(per_problem, problems, axis=1).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def scaling_metrics(correct: np.ndarray, answers: list[list[str | None]], seed: int = 0) -> dict[str, dict]:
    """Avg@k, maj@k and pass@k for k = 1, 2, 4, ... n, from a (problems, n) boolean matrix."""
    correct = np.asarray(correct, dtype=bool)
    n = correct.shape[1]
    out: dict[str, dict] = {}
    for k in ks_up_to(n):
        out[f"avg@{k}"] = metric(correct[:, :k].mean(axis=1), seed)
        maj = [majority(a[:k]) for a in answers]
        out[f"maj@{k}"] = metric(np.array([m is not None and correct[i, m] for i, m in enumerate(maj)], float), seed)
        c = correct.sum(axis=1)
        out[f"pass@{k}"] = metric(np.array([pass_at_k(n, int(ci), k) for ci in c]), seed)
    return out
