import pytest
import torch

from gift.weighting import WeightParams, normaliser, token_weights

Q = torch.tensor([0.9, 0.5, 1e-6, 0.2])
EOT = torch.tensor([False, False, False, True])
LOGP = torch.log(torch.tensor([0.8, 0.1, 0.5, 0.9]))


def test_gift_floors_raises_to_gamma_and_gives_end_of_turn_weight_one():
    p = WeightParams(gamma=2.0, floor=1e-4)
    w = token_weights("gift", Q, EOT, LOGP, p)
    torch.testing.assert_close(w, torch.tensor([0.81, 0.25, 1e-8, 1.0]))
    assert normaliser("gift", Q, EOT, p).item() == pytest.approx(w.sum().item())


def test_sft_is_uniform_and_dft_is_the_models_probability():
    p = WeightParams()
    torch.testing.assert_close(token_weights("sft", Q, EOT, LOGP, p), torch.ones(4))
    torch.testing.assert_close(token_weights("dft", Q, EOT, LOGP, p), torch.tensor([0.8, 0.1, 0.5, 0.9]))
    assert normaliser("sft", Q, EOT, p).item() == 4 and normaliser("dft", Q, EOT, p).item() == 4


def test_rho_keeps_the_tokens_with_most_excess_loss():
    p = WeightParams(rho_ratio=0.5)
    # excess = -log p_model + log q: [-0.12, 1.61, -13.1, -1.50] -> the two largest are positions 0 and 1
    torch.testing.assert_close(token_weights("rho", Q, EOT, LOGP, p), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert normaliser("rho", Q, EOT, p).item() == 2


def test_teacher_filter_keeps_the_rows_the_teacher_finds_likeliest():
    from gift.weighting import teacher_filter

    conf = [[0.9, 0.9, 0.5], [0.1, 0.2, 0.3], [0.0, 0.8, 0.8], [0.7, 0.6, 0.2]]
    labelled = [[False, True, True], [True, True, True], [False, True, True], [True, True, False]]
    # mean log max(q, 1e-4) over labelled tokens: row 0 (0.9, 0.5) -0.40, row 1 -1.67, row 2 (0.8, 0.8) -0.22,
    # row 3 (0.7, 0.6) -0.43: the prompt's q (row 2's 0.0) never counts
    kept, threshold = teacher_filter(conf, labelled, keep=0.5, floor=1e-4)
    assert kept == [0, 2] and threshold == pytest.approx((torch.tensor([0.9, 0.5]).log().mean()).item())
    assert teacher_filter(conf, labelled, keep=0.6, floor=1e-4)[0] == [0, 2, 3]  # ceil(0.6 · 4) = 3 rows
    assert teacher_filter(conf, labelled, keep=1.0, floor=1e-4)[0] == [0, 1, 2, 3]
