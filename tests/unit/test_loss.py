import torch

from gift.loss import gold_logprobs, gold_logprobs_from_logits, weighted_nll


def reference(hidden, weight, targets):
    return torch.log_softmax(hidden @ weight.T, dim=-1).gather(1, targets[:, None]).squeeze(1)


def test_chunked_gold_logprobs_equal_full_softmax():
    torch.manual_seed(0)
    hidden, weight = torch.randn(37, 16), torch.randn(101, 16)
    targets = torch.randint(0, 101, (37,))
    expected = reference(hidden, weight, targets)
    for chunk in (1, 5, 37, 1000):
        torch.testing.assert_close(gold_logprobs(hidden, weight, targets, chunk_size=chunk), expected)
    torch.testing.assert_close(gold_logprobs_from_logits(hidden @ weight.T, targets, chunk_size=7), expected)


def test_chunked_gradients_equal_full_softmax():
    torch.manual_seed(1)
    h1 = torch.randn(20, 8, requires_grad=True)
    w1 = torch.randn(50, 8, requires_grad=True)
    h2, w2 = h1.detach().clone().requires_grad_(), w1.detach().clone().requires_grad_()
    targets = torch.randint(0, 50, (20,))
    gold_logprobs(h1, w1, targets, chunk_size=6).sum().backward()
    reference(h2, w2, targets).sum().backward()
    torch.testing.assert_close(h1.grad, h2.grad)
    torch.testing.assert_close(w1.grad, w2.grad)


def test_weighted_nll_by_hand():
    logp = torch.log(torch.tensor([0.5, 0.25, 1.0]))
    w = torch.tensor([1.0, 2.0, 3.0])
    expected = (1 * 0.6931471805599453 + 2 * 1.3862943611198906 + 0) / 10
    assert abs(weighted_nll(logp, w, 10.0).item() - expected) < 1e-6


def test_fused_weighted_nll_equals_the_unfused_loss_and_gradients():
    """Static weights (sft, gift), self-weights from the logits (dft, eaft) and ASFT's KL term to reference hidden
    states: the fused forward-time gradient equals autograd through the full softmax."""
    from gift.loss import FusedWeightedNLL, chunk_loss
    from gift.weighting import WeightParams, kl_alpha, weigher
    torch.manual_seed(2)
    h1 = torch.randn(23, 8, requires_grad=True)
    w1 = torch.randn(40, 8, requires_grad=True)
    h2, w2 = h1.detach().clone().requires_grad_(), w1.detach().clone().requires_grad_()
    targets, coef, ref_h = torch.randint(0, 40, (23,)), torch.rand(23), torch.randn(23, 8)
    p = WeightParams(eaft_alpha=0.7, eaft_topk=5, asft_alpha=0.3)
    for method in ("gift", "dft", "eaft", "asft"):
        weigh, a = weigher(method, p), kl_alpha(method, p)
        static = None if weigh else coef
        ref = ref_h if a else None
        loss, logp, w, kl = FusedWeightedNLL.apply(h1, w1, targets, static, 0.5, weigh, ref, a, 7)
        (loss * 3).backward()
        part, kl_sum, lp, w2_, kl2 = chunk_loss(h2 @ w2.T, targets, static, weigh, ref @ w2.detach().T if a else None)
        ((part + a * kl_sum) * 0.5 * 3).backward()
        torch.testing.assert_close(logp, reference(h2, w2, targets).detach())
        torch.testing.assert_close(w, w2_.detach())
        torch.testing.assert_close(kl, kl2.detach())
        assert (kl.abs().sum() > 0) == bool(a), method
        torch.testing.assert_close(h1.grad, h2.grad)
        torch.testing.assert_close(w1.grad, w2.grad)
        h1.grad = w1.grad = h2.grad = w2.grad = None
