import itertools
from math import comb

import numpy as np
import pytest

from gift.metrics import bootstrap_ci, ks_up_to, majority, pass_at_k, scaling_metrics


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    """Share of all k-subsets of the samples that contain a correct one."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(outcomes, k))
            assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_worked_example_and_large_n():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 3 of the 6 pairs hold the correct sample
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_majority_ties_go_to_the_first_and_none_never_wins():
    assert majority(["5", "7", "7", "5"]) == 0
    assert majority([None, None, "3"]) == 2
    assert majority([None, None]) is None
    assert majority(["1", "2", "2"]) == 1


def test_scaling_metrics_by_hand():
    # problem 0: samples say 5 (right), 7, 7, 5 -> maj@4 picks 5 (tie, first) -> right; maj@2: 5 vs 7 tie -> 5 right
    # problem 1: samples say 1, 2 (right), 1, None -> maj@4 picks 1 -> wrong
    correct = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], bool)
    answers = [["5", "7", "7", "5"], ["1", "2", "1", None]]
    m = scaling_metrics(correct, answers)
    assert set(m) == {f"{name}@{k}" for name in ("avg", "maj", "pass") for k in (1, 2, 4)}
    assert m["avg@1"]["value"] == 0.5 and m["avg@4"]["value"] == pytest.approx((0.5 + 0.25) / 2)
    assert m["maj@4"]["value"] == 0.5 and m["maj@2"]["value"] == 0.5 and m["maj@1"]["value"] == 0.5
    assert m["pass@1"]["value"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["pass@2"]["value"] == pytest.approx(((1 - 1 / 6) + 0.5) / 2)
    assert m["pass@4"]["value"] == 1.0


def test_ks_and_confidence_intervals():
    assert ks_up_to(1) == [1] and ks_up_to(8) == [1, 2, 4, 8] and ks_up_to(6) == [1, 2, 4, 6]
    values = np.array([1.0] * 50 + [0.0] * 50)
    lo, hi = bootstrap_ci(values)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.196, abs=0.04)  # ≈ ±1.96·sqrt(.25/100)
    assert bootstrap_ci(values) == bootstrap_ci(values)


def test_seed_problem_interval_pools_both_variances():
    from gift.metrics import bootstrap_ci, seed_problem_ci

    rng = np.random.default_rng(0)
    one = (rng.random(300) < 0.4).astype(float)
    assert seed_problem_ci([one]) == pytest.approx(bootstrap_ci(one), abs=0.01)  # one seed: over problems
    agree = [one, one.copy()]  # two seeds that agree keep the problem-level width (no zero-width interval)
    lo, hi = seed_problem_ci(agree)
    assert hi - lo > 0.05
    spread = [(rng.random(300) < p).astype(float) for p in (0.2, 0.4, 0.6)]  # seeds that disagree widen it
    lo2, hi2 = seed_problem_ci(spread)
    assert hi2 - lo2 > 2 * (hi - lo) and lo2 < np.mean(spread) < hi2


def test_identical_seeds_give_one_seeds_interval():
    """Every seed is scored on the same problems: copies of one seed add no information (crossed design)."""
    from gift.metrics import bootstrap_ci, seed_problem_ci

    one = (np.random.default_rng(0).random(300) < 0.4).astype(float)
    assert seed_problem_ci([one] * 5) == pytest.approx(bootstrap_ci(one), abs=0.01)  # nested resampling: 0.051 vs 0.110


def test_seed_problem_interval_covers_the_population_mean():
    """Problems drawn from a population of difficulties, seeds with effects of their own, all symmetric about
    logit 0, so the population mean is exactly 0.5; the nominal 95% interval must cover it (nested: 88-90%)."""
    from gift.metrics import seed_problem_ci

    rng, hits, trials = np.random.default_rng(0), 0, 300
    for _ in range(trials):
        logits = rng.normal(0, 1.5, 200)[None, :] + rng.normal(0, 0.3, 5)[:, None]  # (seeds, problems)
        scores = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(float)
        lo, hi = seed_problem_ci(list(scores))
        hits += lo <= 0.5 <= hi
    assert hits / trials >= 0.93


def test_problem_bootstrap_matches_scipy():
    from scipy.stats import bootstrap

    from gift.metrics import seed_problem_ci

    values = (np.random.default_rng(1).random(400) < 0.3).astype(float)
    ref = bootstrap((values,), np.mean, method="percentile", n_resamples=20000, random_state=0).confidence_interval
    for ours in (bootstrap_ci(values), seed_problem_ci([values])):
        assert ours == pytest.approx((ref.low, ref.high), abs=0.006)


def simulated_coverage(n_seeds: int, spread: float, trials: int, problems: int = 200) -> float:
    """How often the paired interval of two methods covers their population difference, when seeds shift each
    method's logits by N(0, spread) (the seed spread measured here: 1.0-1.5 logits) and problems share a difficulty."""
    from gift.metrics import paired_difference

    rng = np.random.default_rng(1)
    b, u, v = rng.normal(0, 1.5, 400_000), rng.normal(0, spread, 400_000), rng.normal(0, spread, 400_000)
    truth = np.mean(1 / (1 + np.exp(-(b + u))) - 1 / (1 + np.exp(-(b + 0.4 + v))))
    hits = 0
    for _ in range(trials):
        difficulty = rng.normal(0, 1.5, problems)[None, :]
        a = difficulty + rng.normal(0, spread, n_seeds)[:, None]
        c = difficulty + 0.4 + rng.normal(0, spread, n_seeds)[:, None]
        sa, sc = ((rng.random(x.shape) < 1 / (1 + np.exp(-x))).astype(float) for x in (a, c))
        d = paired_difference(list(sa), list(sc))
        hits += d["lo"] <= truth <= d["hi"]
    return hits / trials


@pytest.mark.parametrize("n_seeds, spread, least", [(3, 0.6, 0.92), (3, 1.25, 0.925), (5, 0.3, 0.935),
                                                     (5, 1.25, 0.935)])
def test_paired_interval_covers_what_metrics_states(n_seeds, spread, least):
    """2,000 simulated comparisons each (Monte Carlo s.e. 0.5 points): metrics.crossed_interval states 93-99% at 3
    seeds and 95-98% at 5 (measured here 93.4-94.9% and 94.6-94.9%); the bounds leave 1.5 standard errors."""
    assert simulated_coverage(n_seeds, spread, trials=2000) >= least


def test_the_crossed_interval_never_collapses_while_scores_vary():
    """Equal methods at 3 seeds: where MS_seed + MS_problem − MS_rest fell below 0 the earlier interval had zero
    width (4.8% of comparisons) and a verdict read it as decisive; with components truncated at 0 none does."""
    from gift.metrics import crossed_interval

    rng, widths = np.random.default_rng(3), []
    for _ in range(500):
        difficulty = rng.normal(0, 1.5, 40)[None, :]
        a, b = ((rng.random((3, 40)) < 1 / (1 + np.exp(-difficulty))).astype(float) for _ in range(2))
        r = crossed_interval(a - b)
        widths.append(r["hi"] - r["lo"])
        assert r["se"] ** 2 >= np.var(a - b, ddof=1) / 120 * 0.1  # at least a part of the residual variance
    assert min(widths) > 0
    x = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])  # no seed part at all
    r = crossed_interval(x)
    assert r["hi"] > r["lo"] and r["se"] == pytest.approx(np.sqrt(x.mean(axis=0).var(ddof=1) / 4))
    same = crossed_interval(np.ones((3, 5)))
    assert same["lo"] == same["hi"] == 1.0  # nothing varies: the mean is exact


@pytest.mark.parametrize("n_seeds", [1, 10])
def test_paired_difference_cancels_the_shared_difficulty(n_seeds):
    """Two models that mostly agree (two merges of one instruct model: the same draw decides a problem for both):
    the difference's interval is narrower than one side's own. (At 3 seeds it need not be: the seed part is then
    estimated from 2 degrees of freedom, as it should be.)"""
    from gift.metrics import paired_difference, seed_problem_ci

    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 2, 300)
    draws = [rng.random(300) for _ in range(n_seeds)]
    a = [(u < 1 / (1 + np.exp(-(difficulty + 0.3)))).astype(float) for u in draws]
    b = [(u < 1 / (1 + np.exp(-difficulty))).astype(float) for u in draws]
    d = paired_difference(a, b)
    assert d["value"] == pytest.approx(np.mean(a) - np.mean(b))
    lo_a, hi_a = seed_problem_ci(a)
    assert d["hi"] - d["lo"] < hi_a - lo_a
    assert d["mdd"] > (d["hi"] - d["lo"]) / 2  # 80% power needs more than the half-width
    one = paired_difference(a, [b[0]])  # one evaluation of the other side, set against every seed
    assert one["value"] == pytest.approx(np.mean(a) - np.mean(b[0]))
    with pytest.raises(ValueError, match="same problems"):
        paired_difference(a, [b[0][:10]])
