"""EAFT, ASFT and DFT as gift trains them, against a direct re-implementation of LLaMA-Factory's published loss
functions (src/llamafactory/train/trainer_utils.py: _dft_cross_entropy, _eaft_cross_entropy, _asft_cross_entropy),
on a small Llama with a LoRA adapter whose B is perturbed (so the adapter moves the model away from its reference).

The normaliser: LLaMA-Factory's functions called without num_items_in_batch take the mean over the micro-batch's
labelled tokens; gift divides by the optimiser step's labelled tokens. With one micro-batch per step the two are the
same number, so the losses and gradients must agree to 1e-5. One constant differs by design: LLaMA-Factory divides
EAFT's top-20 entropy by 3.0, gift by ln k (ln 20 = 2.9957), so gift's EAFT loss is LLaMA-Factory's × (3 / ln 20)^α.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from gift.data import IGNORE
from gift.errors import GiftError
from gift.loss import GoldLogprobs
from gift.train import weighted_step
from gift.weighting import WeightParams

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def lf_dft(logits, labels):
    ce = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")[labels != -100]
    return (ce * torch.exp(-ce).detach()).mean()


def lf_eaft(logits, labels, alpha):
    valid = labels != -100
    ce = F.cross_entropy(logits, labels, ignore_index=-100, reduction="none")[valid]
    with torch.no_grad():
        top = torch.topk(logits[valid].detach(), k=20, dim=-1).values
        logq = top - torch.logsumexp(top, dim=-1, keepdim=True)
        w = torch.pow(-(logq.exp() * logq).sum(dim=-1) / 3.0, alpha)
    return (ce * w).mean()


def lf_asft(logits, labels, ref_logits, alpha):
    kl = F.kl_div(F.log_softmax(logits, dim=-1), F.softmax(ref_logits, dim=-1), reduction="none").sum(dim=-1)
    mask = (labels != -100).float()
    return lf_dft(logits, labels) + alpha * (kl * mask).sum() / mask.sum()


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    base = transformers.LlamaForCausalLM(cfg)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                      target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    ids = torch.randint(0, 64, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :4] = IGNORE  # the prompt
    labels[mask == 0] = IGNORE
    n = int((labels[:, 1:] != IGNORE).sum())
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "q": torch.ones(n),
             "is_eot": torch.zeros(n, dtype=torch.bool)}
    return model, batch


def lora_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def lf_side(model, batch, loss_of):
    model.zero_grad()
    model.train()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:].reshape(-1)
    with torch.no_grad(), model.disable_adapter():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    loss = loss_of(logits.reshape(-1, logits.shape[-1]), labels, ref.reshape(-1, ref.shape[-1]))
    loss.backward()
    return loss.detach(), lora_grads(model)


def gift_side(model, batch, method, wp):
    model.zero_grad()
    model.train()
    out = weighted_step(GoldLogprobs(model), batch, method, wp, float(len(batch["q"])))
    out.loss.backward()
    return out.loss.detach(), lora_grads(model)


@pytest.mark.parametrize("method, alpha", [("dft", None), ("eaft", 1.0), ("eaft", 0.5), ("asft", 0.1), ("asft", 0.7)])
def test_equals_llamafactory(pair, method, alpha):
    model, batch = pair
    wp = WeightParams(eaft_alpha=alpha or 1.0, asft_alpha=alpha or 0.1)
    ratio = 1.0
    if method == "eaft":
        lf = lambda lg, lb, ref: lf_eaft(lg, lb, alpha)  # noqa: E731
        ratio = (3.0 / math.log(20)) ** alpha  # gift's ln k against LLaMA-Factory's 3.0
    elif method == "asft":
        lf = lambda lg, lb, ref: lf_asft(lg, lb, ref, alpha)  # noqa: E731
    else:
        lf = lambda lg, lb, ref: lf_dft(lg, lb)  # noqa: E731
    want, want_grads = lf_side(model, batch, lf)
    got, got_grads = gift_side(model, batch, method, wp)
    torch.testing.assert_close(got, want * ratio, rtol=1e-5, atol=1e-6)
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g * ratio, rtol=1e-5, atol=1e-6, msg=name)


def test_asft_is_dft_plus_a_positive_kl_that_vanishes_at_the_reference(pair):
    model, batch = pair
    n = float(len(batch["q"]))
    dft = weighted_step(GoldLogprobs(model), batch, "dft", WeightParams(), n)
    asft = weighted_step(GoldLogprobs(model), batch, "asft", WeightParams(asft_alpha=0.5), n)
    assert float(asft.kl.min()) >= 0 and float(asft.kl.sum()) > 1e-3  # the perturbed adapter moved the model
    torch.testing.assert_close(asft.loss, dft.loss + 0.5 * asft.kl.sum() / n)
    with model.disable_adapter():  # the model is its own reference here: KL 0, ASFT is DFT
        at_ref = weighted_step(GoldLogprobs(model), batch, "asft", WeightParams(asft_alpha=0.5), n)
        torch.testing.assert_close(at_ref.kl, torch.zeros_like(at_ref.kl), atol=1e-6, rtol=0)


def test_asft_refuses_a_model_without_an_adapter(pair):
    model, batch = pair
    with pytest.raises(GiftError, match="adapter switched off"):
        weighted_step(GoldLogprobs(model.get_base_model()), batch, "asft", WeightParams(), 1.0)
