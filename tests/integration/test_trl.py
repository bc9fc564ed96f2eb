"""The TRL path: GIFTTrainer (an SFTTrainer) trains the same adapter as `gift train` on the bundled pair."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from gift import GIFTCollator, load_annotations
from gift.cli import main
from gift.config import ASSETS
from gift.errors import GiftError
from tests.conftest import write_jsonl

pytest.importorskip("trl")
TINY = ASSETS / "tiny"
STEPS, BATCH, ACCUM, RANK, SEED = 7, 4, 2, 8, 3  # 40 rows: 5 steps an epoch, so the run crosses into epoch 2


@pytest.fixture(scope="module")
def annotation(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl")
    rows = [json.loads(line) for line in (TINY / "data" / "math_train.jsonl").read_text().splitlines()[:40]]
    data = write_jsonl(root / "train.jsonl", rows)
    assert main(["annotate", "--teacher", str(TINY / "instruct"), "--data", str(data), "--out", str(root / "ann")]) == 0
    return root


def train_with_trl(root, method: str, tokenizer, dataset=None, steps: int = STEPS,
                   padding_free: bool = False) -> dict[str, torch.Tensor]:
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gift.trl import GIFTTrainer, SFTConfig

    lora = LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    set_seed(SEED)  # as gift train: seed, load, then LoRA's initialisation
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY / "base", dtype=torch.float32), lora)
    args = SFTConfig(output_dir=str(root / f"trl-{method}"), per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=ACCUM, max_steps=steps, learning_rate=2e-3, lr_scheduler_type="cosine",
                     warmup_steps=round(0.25 * STEPS), weight_decay=0.0, max_grad_norm=1.0, seed=SEED, use_cpu=True,
                     report_to="none", save_strategy="no", logging_steps=1, dataloader_num_workers=0,
                     gradient_checkpointing=False, bf16=False,  # TRL defaults to bf16; gift train runs in fp32 on CPU
                     padding_free=padding_free)
    dataset = load_annotations(root / "ann", tokenizer) if dataset is None else dataset
    trainer = GIFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, method=method)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == steps and all("low_conf_loss_share" in h for h in logged)
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


@pytest.mark.slow
@pytest.mark.parametrize("method, padding_free", [("gift", False), ("sft", False), ("gift", True), ("eaft", False),
                                                  ("asft", False)])
def test_gift_trainer_equals_gift_train(annotation, method, padding_free):
    """gift train with its defaults (on this CPU's sdpa attention: padded, grouped by length, checkpointing) against
    GIFTTrainer padded or packed: the same adapter."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY / "base")
    ours = annotation / f"cli-{method}-{padding_free}"
    assert main(["train", "--model", str(TINY / "base"), "--data", str(annotation / "ann"), "--out", str(ours),
                 "--method", method, "--rank", str(RANK), "--alpha", str(2 * RANK), "--lora-dropout", "0",
                 "--batch-size", str(BATCH), "--grad-accum", str(ACCUM), "--max-steps", str(STEPS), "--lr", "2e-3",
                 "--warmup-ratio", "0.25", "--seed", str(SEED)]) == 0
    assert json.loads((ours / "gift_train.json").read_text())["grouped_by_length"] is True
    cli = load_file(ours / "adapter_model.safetensors")
    trl = train_with_trl(annotation, method, tokenizer, padding_free=padding_free)
    init_b = 0.0  # LoRA's B starts at zero, so every B below was moved by training
    assert len(cli) == len(trl) > 0
    for name, value in trl.items():
        key = name.replace(".default", "")
        ref = cli[key]
        if "lora_B" in key:
            assert ref.abs().max() > init_b
        assert (value - ref).norm() / ref.norm() < 1e-4, key


def test_load_annotations_checks_the_tokenizer(annotation, tokenizer):
    from transformers import AutoTokenizer

    ds = load_annotations(annotation / "ann", AutoTokenizer.from_pretrained(TINY / "base"))
    assert {"input_ids", "labels", "confidence"} <= set(ds.column_names) and len(ds) == 40
    meta = json.loads(ds.info.description)
    batch = GIFTCollator(0, meta["eot_token_ids"])([ds[0], ds[1]])
    assert batch["q"].shape == batch["is_eot"].shape and batch["is_eot"].sum() == 2
    with pytest.raises(GiftError, match="annotated with a tokenizer"):
        load_annotations(annotation / "ann", tokenizer)


@pytest.mark.parametrize("method", ["gift", "rho"])
def test_gift_trainer_refuses_a_dataset_without_confidences(annotation, method):
    """Without `confidence` every q would be 1: plain SFT under GIFT's name."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY / "base")
    plain = load_annotations(annotation / "ann", tokenizer).remove_columns("confidence")
    with pytest.raises(GiftError, match=f"method='{method}' needs teacher confidences"):
        train_with_trl(annotation, method, tokenizer, plain, steps=1)


def test_gift_trainer_pads_with_eos_when_the_tokenizer_has_no_pad(annotation):
    """Llama and Mistral base tokenizers have no pad token; SFTTrainer falls back to eos, and so does GIFTTrainer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY / "base")
    dataset = load_annotations(annotation / "ann", tokenizer)
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    trained = train_with_trl(annotation, "gift", tokenizer, dataset, steps=3)  # 2 warm-up steps from lr 0
    assert any(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)


def test_gift_train_refuses_mixed_precision_left_by_an_earlier_trainer(annotation, monkeypatch):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    AcceleratorState._reset_state(True)
    Accelerator(cpu=True, mixed_precision="bf16")  # as SFTConfig's default bf16=True leaves it
    try:
        with pytest.raises(GiftError, match="set mixed precision bf16, which gift train would inherit"):
            from gift.config import TrainConfig
            from gift.train import train
            train(TrainConfig(model=str(TINY / "base"), data=str(annotation / "ann"), out=str(annotation / "mp")))
    finally:
        AcceleratorState._reset_state(True)
    assert not (annotation / "mp").exists()


@pytest.mark.slow
def test_readme_example_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).parents[2] / "examples" / "trl_gift.py"
    done = subprocess.run([sys.executable, str(example), "--out", str(tmp_path), "--max-steps", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "merged" / "model.safetensors").is_file() and (tmp_path / "adapter").is_dir()


def test_gift_trainer_groups_each_step_as_gift_train_does(annotation):
    """GiftOrder: each step holds the rows gift train draws for it, longest first; rho keeps the drawn order."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gift.train import step_indices
    from gift.trl import GIFTTrainer, SFTConfig

    tok = AutoTokenizer.from_pretrained(TINY / "base")
    ds = load_annotations(annotation / "ann", tok)
    lengths = [len(ids) for ids in ds["input_ids"]]
    args = SFTConfig(output_dir=str(annotation / "order"), per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=ACCUM, seed=SEED, use_cpu=True, report_to="none", bf16=False)
    for method in ("gift", "rho"):
        trainer = GIFTTrainer(model=AutoModelForCausalLM.from_pretrained(TINY / "base"), args=args, train_dataset=ds,
                              processing_class=tok, method=method)
        order = list(trainer._get_train_sampler(ds))
        for step in range(len(ds) // (BATCH * ACCUM)):
            drawn = step_indices(len(ds), step, BATCH * ACCUM, SEED)
            got = order[step * BATCH * ACCUM:(step + 1) * BATCH * ACCUM]
            assert got == (drawn if method == "rho" else sorted(drawn, key=lambda i: -lengths[i]))
    assert order != sorted(order, key=lambda i: -lengths[i])  # grouping is within steps, not over the epoch


def test_gift_trainer_refuses_other_sampling_strategies(annotation):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gift.trl import GIFTTrainer, SFTConfig

    tok = AutoTokenizer.from_pretrained(TINY / "base")
    args = SFTConfig(output_dir=str(annotation / "grouped"), train_sampling_strategy="group_by_length", use_cpu=True,
                     report_to="none", bf16=False)
    with pytest.raises(GiftError, match="seeded order"):
        GIFTTrainer(model=AutoModelForCausalLM.from_pretrained(TINY / "base"), args=args,
                    train_dataset=load_annotations(annotation / "ann", tok), processing_class=tok)
