"""The preconditions' arithmetic (gift.preconditions) against figures worked by hand."""
from __future__ import annotations

import math

import pytest
import torch

from gift.preconditions import (
    branch_inversions,
    failure_confidence,
    first_divergence,
    is_runaway,
    loss_shares,
    low_q_carriers,
)


def test_loss_shares_by_hand():
    q = torch.tensor([0.95, 0.2, 0.6, 0.99])
    p_base = torch.tensor([0.01, 0.5, 0.5, 0.9])
    eot = torch.tensor([False, False, False, True])
    ce = [-math.log(p) for p in (0.01, 0.5, 0.5, 0.9)]
    w = [0.95, 0.2, 0.6, 1.0]  # end-of-turn weight 1
    got = loss_shares(q, p_base, eot)
    assert got["uniform_low"] == pytest.approx(ce[1] / sum(ce))
    assert got["gift_low"] == pytest.approx(w[1] * ce[1] / sum(a * b for a, b in zip(w, ce)))
    assert got["uniform_relearn"] == pytest.approx(ce[0] / sum(ce))  # only token 0: q ≥ 0.9 and p_base < 0.1
    assert got["gift_relearn"] == pytest.approx(w[0] * ce[0] / sum(a * b for a, b in zip(w, ce)))
    assert got["relearn_tokens"] == pytest.approx(0.25)


def rows_with(choice_q: dict[int, float], counts: dict[int, int]) -> list:
    """Rows `1 2 X 9`: context (1, 2) continued by X, X drawn `counts` times with teacher confidence choice_q[X]."""
    rows = []
    for token, n in counts.items():
        for _ in range(n):
            ids = [1, 2, token, 9]
            w = torch.tensor([0.0, 1.0, choice_q[token], 1.0])
            rows.append((ids, [False, True, True, True], w))
    return rows


def test_a_majority_the_teacher_finds_unlikely_is_reported_inverted():
    # the data stops (token 5) 80% of the time, but the teacher gives stopping q 0.001 and continuing (6) q 0.9
    found = branch_inversions(rows_with({5: 0.001, 6: 0.9}, {5: 80, 6: 20}))
    assert found, "the inversion was not found"
    top = found[0]
    assert (top["majority"], top["weighted"], top["count"]) == (5, 6, 100)
    assert top["majority_share"] == pytest.approx(0.8)
    assert top["majority_weight_share"] == pytest.approx(80 * 0.001 / (80 * 0.001 + 20 * 0.9))
    assert top["context"][-1] == 2  # the shortest context that shows it is kept; longer twins are dropped
    assert len({(r["majority"], r["weighted"], r["count"]) for r in found}) == len(found)


def test_a_tie_has_no_majority_to_reverse():
    # three continuations drawn equally often (as after "." in a row's three sentences): no choice of the data's
    assert branch_inversions(rows_with({5: 0.001, 6: 0.9, 7: 0.5}, {5: 30, 6: 30, 7: 30})) == []
    assert branch_inversions(rows_with({5: 0.001, 6: 0.9, 7: 0.5}, {5: 31, 6: 30, 7: 30}))  # one more: a majority


def test_a_runaway_is_a_clear_majority_all_but_erased():
    # the first world's stop: 80% of the data, weight share 80·0.001 / (80·0.001 + 20·0.9) = 0.4%
    assert is_runaway(branch_inversions(rows_with({5: 0.001, 6: 0.9}, {5: 80, 6: 20}))[0])
    # a near-tie of numbers (the data's 35% against 33%, weighted 30% against 32%): reversed, no runaway
    near = branch_inversions(rows_with({5: 0.3, 6: 0.33, 7: 0.3}, {5: 35, 6: 33, 7: 32}))[0]
    assert (near["majority"], near["weighted"]) == (5, 6) and not is_runaway(near)
    # a clear majority keeping 5% of the weight or more is a reversal, not a runaway; under 40% of the data neither
    kept = branch_inversions(rows_with({5: 0.03, 6: 0.9}, {5: 70, 6: 30}))[0]
    assert kept["majority_weight_share"] == pytest.approx(70 * 0.03 / (70 * 0.03 + 30 * 0.9))
    assert kept["majority_weight_share"] >= 0.05 and not is_runaway(kept)
    spread = branch_inversions(rows_with({5: 0.0001, 6: 0.9, 7: 0.9, 8: 0.9}, {5: 39, 6: 21, 7: 20, 8: 20}))[0]
    assert spread["majority_share"] == pytest.approx(0.39) and not is_runaway(spread)


def test_no_inversion_where_the_weights_agree_or_the_context_is_rare():
    assert branch_inversions(rows_with({5: 0.9, 6: 0.001}, {5: 80, 6: 20})) == []
    assert branch_inversions(rows_with({5: 0.001, 6: 0.9}, {5: 8, 6: 2})) == []  # 10 < MIN_DECISIONS


def test_p1_takes_q_where_greedy_first_leaves_the_solution():
    q = torch.tensor([0.9, 0.3, 0.05, 0.8])
    assert first_divergence(q, torch.tensor([True, False, False, True])) == pytest.approx(0.3)
    assert first_divergence(q, torch.tensor([True, True, True, True])) is None  # greedy writes it whole
    got = failure_confidence([None, 0.3, 0.05, None, 0.02, 0.5])
    assert got == {"rows": 6, "failures": 4, "median": pytest.approx((0.05 + 0.3) / 2), "below": 0.5}
    assert failure_confidence([None, None]) == {"rows": 2, "failures": 0, "median": None, "below": None}


def test_low_q_carriers_by_hand_and_the_odds_identity():
    ids = torch.tensor([7, 8, 7, 9, 5])
    q = torch.tensor([0.2, 0.01, 0.4, 0.9, 0.3])
    p_base = torch.tensor([0.5, 0.1, 0.25, 0.2, 0.9])
    eot = torch.tensor([False, False, False, False, True])  # a low-q end of turn keeps weight 1
    ce = [-math.log(p) for p in p_base.tolist()]
    w = [0.2, 0.01, 0.4, 0.9, 1.0]
    got = low_q_carriers(ids, q, p_base, eot, top=2)
    uniform, gift = sum(ce), sum(a * b for a, b in zip(w, ce))
    assert [c["token"] for c in got["carriers"]] == [7, 5]  # 0.2·0.69 + 0.4·1.39 = 0.69 > 1·0.105 > 0.01·2.3
    seven = got["carriers"][0]
    assert seven["uniform"] == pytest.approx((ce[0] + ce[2]) / uniform)
    assert seven["gift"] == pytest.approx((0.2 * ce[0] + 0.4 * ce[2]) / gift)
    assert seven["mean_q"] == pytest.approx((0.2 * ce[0] + 0.4 * ce[2]) / (ce[0] + ce[2]))
    shares = loss_shares(q, p_base, eot)
    odds = lambda s: s / (1 - s)  # noqa: E731
    assert odds(shares["gift_low"]) == pytest.approx(odds(shares["uniform_low"]) * got["odds_ratio"])


def pooled_rows(q_minus: float, mixed: int = 0) -> list:
    """Rows `7 + 18 -` and `7 = 18 .` (token ids: + 3, = 4, 18 18, - 5, . 6): after the one token 18 the data goes on
    with - (60 rows) or . (40 rows), but the token before 18 decides which, as after ' + 18' and ' = 18' in
    compound solutions; `mixed` of the `+ 18` rows go on with . instead."""
    rows = []
    for before, after, n in ((3, 5, 60 - mixed), (3, 6, mixed), (4, 6, 40)):
        for _ in range(n):
            w = torch.tensor([0.0, 1.0, 1.0, 1.0, q_minus if after == 5 else 0.9])
            rows.append(([1, 7, before, 18, after], [False, True, True, True, True], w))
    return rows


def test_a_reversal_three_tokens_take_apart_is_marked_separated():
    # the teacher gives - q 0.01 (it would write =), so the weights favour . after 18 (60·0.01 against 40·0.9)
    found = {tuple(r["context"]): r for r in branch_inversions(pooled_rows(0.01))}
    assert (found[(18,)]["majority"], found[(18,)]["weighted"]) == (5, 6)
    assert is_runaway(found[(18,)]) and found[(18,)]["separated"]  # `+ 18` only ever goes on with -
    # where some `+ 18` rows go on with . too, the longer context does not take the two apart: counted
    found = {tuple(r["context"]): r for r in branch_inversions(pooled_rows(0.01, mixed=5))}
    assert not found[(18,)]["separated"]
    assert not found[(3, 18)]["separated"] and (found[(3, 18)]["majority"], found[(3, 18)]["weighted"]) == (5, 6)


def test_a_context_at_the_rows_start_is_never_separated():
    # rows_with's decision sits at the third token: no 3-token context holds it, so nothing takes it apart
    assert not branch_inversions(rows_with({5: 0.001, 6: 0.9}, {5: 80, 6: 20}))[0]["separated"]
