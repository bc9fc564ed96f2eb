"""annotate (instruct) -> train (base) -> merge (into instruct) -> eval on pairs laid out like the paper's families:
the real Llama-3.x, Qwen2.5, DeepSeek and Phi-3 tokenizers, configured as each family's base and instruct models
are (gift.tiny.layouts says how), with tiny random weights. Skipped where ../shared/data/vocab is absent."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from gift.annotate import annotate
from gift.config import AnnotateConfig, EvalConfig, MergeConfig, TrainConfig
from gift.data import IGNORE, TemplateOptions, end_of_turn_ids
from gift.evaluate import evaluate
from gift.generate import stop_token_ids
from gift.merge import merge
from gift.model import load_model, load_tokenizer, special_token_notes, special_tokens, vocab_fingerprint
from gift.tiny.layouts import FAMILIES
from gift.train import train
from tests.conftest import VOCAB, write_jsonl

pytestmark = pytest.mark.skipif(not VOCAB.is_dir(), reason="../shared/data/vocab is absent")
EOT = {"llama3": "<|eot_id|>", "qwen2.5": "<|im_end|>", "deepseek": "<｜end▁of▁sentence｜>", "phi3": "<|end|>"}
EOS_DIFFERS = {"llama3", "qwen2.5", "phi3"}  # DeepSeek's base and instruct share eos; the others do not


@pytest.mark.parametrize("name", list(FAMILIES))
def test_base_and_instruct_tokenizers_share_ids_and_differ_only_in_roles(layout_pair, name):
    base, instruct = (load_tokenizer(str(d)) for d in layout_pair(name))
    assert base.get_vocab() == instruct.get_vocab()
    assert vocab_fingerprint(base) == vocab_fingerprint(instruct)  # refused before: the fingerprint hashed eos
    notes = special_token_notes(special_tokens(base), special_tokens(instruct), "base", "instruct")
    assert any(n.startswith("eos:") for n in notes) == (name in EOS_DIFFERS)
    assert end_of_turn_ids(instruct, TemplateOptions()) == {instruct.convert_tokens_to_ids(EOT[name])}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_whole_loop_runs_on_a_real_layout(layout_pair, name, tmp_path, capsys):
    from peft import PeftModel

    base, instruct = layout_pair(name)
    data = write_jsonl(tmp_path / "train.jsonl", [
        {"question": f"What is {a} plus {a + 2}?", "answer": f"{a} + {a + 2} = {2 * a + 2}. The answer is {2 * a + 2}."}
        for a in range(6)])
    ann = annotate(AnnotateConfig(teacher=str(instruct), data=str(data), out=str(tmp_path / "ann"), batch_size=3))
    eot = load_tokenizer(str(instruct)).convert_tokens_to_ids(EOT[name])
    meta = json.loads((ann / "meta.json").read_text())
    assert meta["eot_token_ids"] == [eot]
    table = pq.read_table(ann / "annotations.parquet").to_pydict()
    assert all([y for y in labels if y != IGNORE][-1] == eot for labels in table["labels"])  # each row ends a turn

    adapter = train(TrainConfig(model=str(base), data=str(ann), out=str(tmp_path / "adapter"), rank=4, alpha=8.0,
                                lora_dropout=0.0, max_steps=2, batch_size=3, lr=1e-2, seed=0))
    assert ("special roles differ" in capsys.readouterr().err) == (name in EOS_DIFFERS)
    merged = merge(MergeConfig(instruct=str(instruct), adapter=str(adapter), out=str(tmp_path / "merged")))

    # the merged weights are PEFT's merge of the adapter into instruct
    reference = PeftModel.from_pretrained(load_model(str(instruct)), str(adapter)).merge_and_unload().state_dict()
    ours = load_file(merged / "model.safetensors")
    changed = [k for k in ours if not torch.equal(ours[k], load_file(instruct / "model.safetensors")[k])]
    assert changed and all(torch.allclose(ours[k], reference[k], atol=1e-6) for k in ours)

    card = (merged / "README.md").read_text()  # the model card says how it was made, with the pair check
    assert f"| base (adapter trained on) | {base} |" in card and meta["source_sha256"] in card
    assert "‖W_I − W_B‖/‖W_B‖" in card and "WARNING" not in card

    # the merged model speaks and stops as instruct: its tokenizer, chat template and generation config
    m_tok, i_tok = load_tokenizer(str(merged)), load_tokenizer(str(instruct))
    assert special_tokens(m_tok) == special_tokens(i_tok) and m_tok.chat_template == i_tok.chat_template
    assert json.loads((merged / "generation_config.json").read_text()) == \
        json.loads((instruct / "generation_config.json").read_text())
    merged_model = load_model(str(merged))
    assert eot in stop_token_ids(m_tok, merged_model)
    merged_model.generation_config.eos_token_id = None  # a generation config that names no stop: the template's
    assert eot in stop_token_ids(m_tok, merged_model)

    bench = write_jsonl(tmp_path / "bench.jsonl", [{"question": "What is 2 plus 3?", "answer": "5"}])
    out = evaluate(EvalConfig(model=str(merged), bench=[str(bench)], out=str(tmp_path / "eval"), max_new_tokens=4),
                   quiet=True)
    assert json.loads((out / "results.json").read_text())["results"]["bench"]["accuracy,none"] in (0.0, 1.0)
