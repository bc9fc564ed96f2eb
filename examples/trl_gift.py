"""GIFT through TRL on the bundled tiny pair: annotate with gift, train with GIFTTrainer, merge with gift.

    python examples/trl_gift.py [--out runs/trl_example] [--max-steps 20]
"""
import argparse
import subprocess
import sys
from pathlib import Path

from accelerate.utils import set_seed
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

import gift
from gift.trl import GIFTTrainer, SFTConfig

PAIR = Path(gift.__file__).parent / "assets" / "tiny"
ap = argparse.ArgumentParser()
ap.add_argument("--out", default="runs/trl_example")
ap.add_argument("--max-steps", type=int, default=20)
args = ap.parse_args()
out = Path(args.out)

gift_cli = [sys.executable, "-m", "gift.cli"]
# 1. The instruct model scores the training data once (its confidence in every gold token).
subprocess.run([*gift_cli, "annotate", "--teacher", PAIR / "instruct", "--data", PAIR / "data" / "math_train.jsonl",
                "--out", out / "ann", "--overwrite"], check=True)

# 2. LoRA on the base model with TRL; GIFTTrainer only changes the loss (and visits rows in gift train's order).
tokenizer = AutoTokenizer.from_pretrained(PAIR / "base")
set_seed(0)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(PAIR / "base"),
                       LoraConfig(r=64, lora_alpha=128, lora_dropout=0.05, target_modules="all-linear",
                                  task_type="CAUSAL_LM"))
config = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=16, max_steps=args.max_steps,
                   learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=0.1, logging_steps=5,
                   save_strategy="no", report_to="none", bf16=False, seed=0)
trainer = GIFTTrainer(model=model, args=config, train_dataset=gift.load_annotations(out / "ann", tokenizer),
                      processing_class=tokenizer, method="gift")
trainer.train()
trainer.model.save_pretrained(out / "adapter")

# 3. Transfer: merge the base-trained adapter into the instruct model.
subprocess.run([*gift_cli, "merge", "--instruct", PAIR / "instruct", "--adapter", out / "adapter",
                "--out", out / "merged", "--overwrite"], check=True)
print(f"merged model: {out / 'merged'}")
