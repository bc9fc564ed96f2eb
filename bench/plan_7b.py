"""`gift run --plan` on the 7B config the project ships (configs/qwen2.5-7b-math.yaml), served and with merge_all, on
one H100 (the default preset). The models are stand-ins with Qwen2.5-7B's published shape (config.json) and the real
Qwen2.5 tokenizer (../shared/data/vocab), no weights: --plan reads the shape and counts tokens, nothing else. The
config's dev files are yours to hold out; here 200 math and 200 MMLU-STEM rows stand for them (counts only).

    python bench/plan_7b.py     # writes bench/results/plan_7b.json and prints the table
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml

from gift.experiment import Experiment, load_run_config
from gift.tiny.layouts import build_pair

ROOT = Path(__file__).parents[1]
VOCAB = Path(os.environ.get("GIFT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "vocab"
QWEN25_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base, instruct = build_pair("qwen2.5", VOCAB, tmp / "pair")
        for d in (base, instruct):
            config = json.loads((d / "config.json").read_text())
            config.pop("layer_types", None)
            (d / "config.json").write_text(json.dumps({**config, **QWEN25_7B}))
            (d / "model.safetensors").unlink()
        shared = VOCAB.parent
        math = [json.loads(x) for x in (shared / "math500_test.jsonl").read_text().splitlines()[:200]]
        mmlu = [json.loads(x) for x in (shared / "mmlu_stem_test.jsonl").read_text().splitlines()[:200]]
        for name, rows in (("math_dev", math), ("mmlu_stem_dev", mmlu)):
            (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg_path = ROOT / "configs" / "qwen2.5-7b-math.yaml"
        raw = yaml.safe_load(cfg_path.read_text())
        for b in raw["benchmarks"]:
            if "file" in b:
                b["file"] = str(tmp / Path(b["file"]).name)
        figures = {}
        for label, merge_all in (("served", False), ("merge_all", True)):
            cfg = load_run_config(cfg_path, {"base": str(base), "instruct": str(instruct), "out": str(tmp / "run"),
                                             "benchmarks": raw["benchmarks"], "merge_all": merge_all})
            cost, text = Experiment(cfg).plan("h100")
            print(f"--- {label}\n{text}")
            figures[label] = {"stages": cost.stages, "tokens": cost.tokens, "bytes": cost.bytes,
                              "seconds": cost.seconds}
    out = ROOT / "bench" / "results" / "plan_7b.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures: {out}")


if __name__ == "__main__":
    main()
