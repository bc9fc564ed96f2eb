"""Heads that are more than a plain linear layer: gold log-probs must equal the model's own forward pass."""
import pytest
import torch

from gift.data import IGNORE
from gift.loss import GoldLogprobs, plain_head


def reference_logprobs(model, ids, labels):
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1].float()
    mask = labels[:, 1:] != IGNORE
    return torch.log_softmax(logits, -1)[mask].gather(1, labels[:, 1:][mask][:, None]).squeeze(1)


def tiny(cls_name: str, **extra):
    import transformers

    cfg = getattr(transformers, cls_name)(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, **extra)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("cls_name,extra", [("GraniteConfig", {"logits_scaling": 8.0}),
                                            ("Gemma2Config", {"final_logit_softcapping": 3.0, "head_dim": 8}),
                                            ("LlamaConfig", {})])
def test_gold_logprobs_follow_the_models_own_head(cls_name, extra):
    model = tiny(cls_name, **extra)
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    labels[:, :4] = IGNORE
    with torch.no_grad():
        ours = GoldLogprobs(model)(ids, torch.ones_like(ids), labels)
        ref = reference_logprobs(model, ids, labels)
    assert plain_head(model) == (not extra)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # the fused weighted loss takes the same path: its log p equal the forward's too
    with torch.no_grad():
        logp = GoldLogprobs(model)(ids, torch.ones_like(ids), labels, coef=torch.ones(len(ref))).logp
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=1e-5)


def test_lora_on_the_output_layer_is_used_and_trained():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("LlamaConfig"), LoraConfig(r=4, lora_alpha=8, target_modules=["lm_head", "q_proj"],
                                                           init_lora_weights=False))
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    scorer = GoldLogprobs(model)
    assert not scorer.plain_head
    loss, logp, _, _ = scorer(ids, torch.ones_like(ids), labels, coef=torch.ones((labels[:, 1:] != IGNORE).sum()))
    with torch.no_grad():
        torch.testing.assert_close(logp, reference_logprobs(model, ids, labels), atol=1e-5, rtol=1e-5)
    loss.backward()
    head_lora = [p for n, p in model.named_parameters() if "lm_head" in n and "lora_" in n]
    assert head_lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head_lora)
