"""The paper's annotation format (instruction, response, scores [[p, p], …]) read and written by gift annotate, on the
real Qwen2.5 and Llama-3 tokenizers (tiny random weights). The reference is the paper's confidence_anno.py as its
source reads (github zwRuan/gift): its prompt string, prompt and response tokenized together without special
tokens, the gold token's softmax probability from the last prompt position on; written here from that description."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from gift.annotate import annotate
from gift.config import AnnotateConfig
from gift.data import IGNORE, STEP_BY_STEP
from gift.errors import GiftError
from gift.model import load_model, load_tokenizer
from tests.conftest import VOCAB, write_jsonl

pytestmark = pytest.mark.skipif(not VOCAB.is_dir(), reason="../shared/data/vocab is absent")
SYSTEM = "You are a helpful assistant."
# the paper's prompt strings (confidence_anno.py's qwen25_prompt and llama_ins_prompt): Qwen's is ChatML exactly;
# Llama's puts a newline after each <|eot_id|>, which Llama-3's own template does not
PROMPTS = {
    "qwen2.5": ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n{q}\n" + STEP_BY_STEP
                + "<|im_end|>\n<|im_start|>assistant\n"),
    "llama3": ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM + "<|eot_id|>\n"
               "<|start_header_id|>user<|end_header_id|>\n\n{q}\n" + STEP_BY_STEP + "<|eot_id|>\n"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
ROWS = [{"instruction": f"What is {a} plus {a + 2}?",
         "response": f"We add: {a} + {a + 2} = {2 * a + 2}.\nSo the answer is $\\boxed{{{2 * a + 2}}}$."}
        for a in (3, 17, 250)]


@torch.inference_mode()
def paper_scores(instruct, family: str) -> list[list[list[float]]]:
    tok, model = load_tokenizer(str(instruct)), load_model(str(instruct), "float32")
    out = []
    for row in ROWS:
        prompt = PROMPTS[family].replace("{q}", row["instruction"])
        ids = tok(prompt + row["response"], return_tensors="pt", add_special_tokens=False).input_ids
        n_prompt = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids.shape[1]
        probs = model(ids).logits[0, :-1].softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
        out.append([[p, p] for p in probs[n_prompt - 1:].tolist()])
    return out


def annotation(path):
    return pq.read_table(path / "annotations.parquet").to_pydict()


def test_qwen_scores_equal_the_paper_scripts_and_round_trip(layout_pair, tmp_path):
    _, instruct = layout_pair("qwen2.5")
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    ours = annotate(AnnotateConfig(teacher=str(instruct), data=str(data), out=str(tmp_path / "ours"),
                                   system_prompt=SYSTEM, suffix=STEP_BY_STEP, dtype="float32",
                                   export_official=str(tmp_path / "exported.jsonl")))
    exported = [json.loads(line) for line in (tmp_path / "exported.jsonl").read_text().splitlines()]
    reference = paper_scores(instruct, "qwen2.5")
    for got, want, row in zip(exported, reference, ROWS):
        assert (got["instruction"], got["response"]) == (row["instruction"], row["response"])
        assert len(got["scores"]) == len(want)  # one score per response token, end-of-turn not scored
        assert all(a == b for a, b in got["scores"])
        # random weights give q ≈ 1/vocabulary, varying ±15% by position: a shift by one token fails at rel 1e-4
        assert [a for a, _ in got["scores"]] == pytest.approx([a for a, _ in want], rel=1e-4, abs=1e-12)

    paper_file = write_jsonl(tmp_path / "paper.jsonl", [{**r, "scores": s} for r, s in zip(ROWS, reference)])
    imported = annotate(AnnotateConfig(teacher=str(instruct), data=str(paper_file), out=str(tmp_path / "imported"),
                                       system_prompt=SYSTEM, suffix=STEP_BY_STEP, official=True))
    a, b = annotation(ours), annotation(imported)
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    eot = load_tokenizer(str(instruct)).convert_tokens_to_ids("<|im_end|>")
    for ids, labels, qa, qb in zip(a["input_ids"], a["labels"], a["confidence"], b["confidence"]):
        for i, y in enumerate(labels):
            if y == IGNORE:
                assert qa[i] == qb[i] == 0
            elif ids[i] == eot:
                assert qb[i] == 1.0  # the format has no end-of-turn score: weight 1, as published
            else:
                assert qb[i] == pytest.approx(qa[i], rel=1e-4, abs=1e-12)
    meta = json.loads((imported / "meta.json").read_text())
    assert meta["scores"].startswith("imported from the paper's format")


def test_llama_scores_align_and_a_miscounted_row_is_refused(layout_pair, tmp_path):
    _, instruct = layout_pair("llama3")
    reference = paper_scores(instruct, "llama3")
    paper_file = write_jsonl(tmp_path / "paper.jsonl", [{**r, "scores": s} for r, s in zip(ROWS, reference)])
    imported = annotate(AnnotateConfig(teacher=str(instruct), data=str(paper_file), out=str(tmp_path / "ok"),
                                       system_prompt=SYSTEM, suffix=STEP_BY_STEP, official=True))
    for labels, q, s in zip(annotation(imported)["labels"], annotation(imported)["confidence"], reference):
        scored = [q[i] for i, y in enumerate(labels) if y != IGNORE][:-1]
        assert scored == pytest.approx([p for p, _ in s], rel=1e-6, abs=1e-12)

    short = write_jsonl(tmp_path / "short.jsonl", [{**r, "scores": s[:-1]} for r, s in zip(ROWS, reference)])
    with pytest.raises(GiftError, match=r"short.jsonl:1: \d+ scores for \d+ response tokens"):
        annotate(AnnotateConfig(teacher=str(instruct), data=str(short), out=str(tmp_path / "bad"), official=True))
    assert not (tmp_path / "bad").exists()
    bad = write_jsonl(tmp_path / "p.jsonl", [{**ROWS[0], "scores": [[1.5, 1.5]]}])
    with pytest.raises(GiftError, match="outside"):
        annotate(AnnotateConfig(teacher=str(instruct), data=str(bad), out=str(tmp_path / "bad"), official=True))


def test_export_refuses_rows_the_format_cannot_hold(layout_pair, tmp_path):
    _, instruct = layout_pair("qwen2.5")
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}])
    with pytest.raises(GiftError, match="one user turn"):
        annotate(AnnotateConfig(teacher=str(instruct), data=str(data), out=str(tmp_path / "o"),
                                export_official=str(tmp_path / "x.jsonl")))
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.jsonl").exists()
