"""Bad input is refused up front with a one-line error naming the file, line or setting, and the fix;
the CLI exits 2 without a traceback (--debug shows it) and writes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

from gift.cli import main
from tests.conftest import save_model, write_jsonl
from tests.integration.test_core import do_annotate, do_train


def fails(capsys, argv: list[str], message: str) -> str:
    capsys.readouterr()  # drop what fixtures printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("gift: error: ")]
    assert len(errors) == 1 and message in errors[0], err  # one line, after any progress bars
    assert "Traceback" not in err
    return errors[0]


@pytest.fixture
def pair(make_pair):
    return make_pair("llama", True)


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    (b"", "file is empty"),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "a",\n', "d.jsonl:2: malformed JSON"),
    (b'{"prompt": "a", "completion": "b"}\n{"text": "a"}\n', "d.jsonl:2: no prompt/response fields"),
    (b'{"prompt": "a", "completion": ""}\n', "d.jsonl:1: empty response"),
    (b'{"prompt": "caf\xe9", "completion": "b"}\n', "d.jsonl:1: not valid UTF-8"),
    (b'{"prompt": "a", "completion": "' + b"b " * 400 + b'"}\n', "no rows left after encoding (1 longer than max_length)"),
])
def test_bad_training_files(pair, tmp_path, capsys, content, message):
    data = tmp_path / "d.jsonl"
    if content is not None:
        data.write_bytes(content)
    fails(capsys, ["annotate", "--teacher", str(pair[1]), "--data", str(data), "--out", str(tmp_path / "ann"),
                   "--max-length", "64"], message)
    assert not (tmp_path / "ann").exists()


def test_debug_flag_shows_the_traceback(pair, tmp_path):
    with pytest.raises(Exception, match="file not found"):
        main(["--debug", "annotate", "--teacher", str(pair[1]), "--data", str(tmp_path / "x.jsonl"),
              "--out", str(tmp_path / "a")])


def test_teacher_without_chat_template(tmp_path, capsys, tokenizer):
    from gift.tiny import model_config, random_model
    path = save_model(random_model(model_config("llama", len(tokenizer)), 0), tokenizer, tmp_path / "bare")
    tok = type(tokenizer).from_pretrained(path)  # the same tokenizer with its template removed
    tok.chat_template = None
    tok.save_pretrained(path)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}])
    fails(capsys, ["annotate", "--teacher", str(path), "--data", str(data), "--out", str(tmp_path / "a")],
          "tokenizer has no chat template; pass --chat-template FILE")
    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|im_end|>{% endfor %}"
                        "{% if add_generation_prompt %}assistant: {% endif %}")
    assert main(["annotate", "--teacher", str(path), "--data", str(data), "--out", str(tmp_path / "a"),
                 "--chat-template", str(template)]) == 0


def test_pickled_weights_need_trust(pair, arith_jsonl, tmp_path, capsys):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in Path(pair[1]).iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(Path(pair[1]) / "model.safetensors"), pickled / "pytorch_model.bin")
    argv = ["annotate", "--teacher", str(pickled), "--data", str(arith_jsonl), "--out", str(tmp_path / "a")]
    fails(capsys, argv, "weights are stored only as a pickle (pytorch_model.bin)")
    assert main(argv + ["--trust-pickle"]) == 0

    adapter = do_train(pair[0], arith_jsonl, tmp_path / "ad", method="sft")
    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    fails(capsys, ["merge", "--instruct", str(pair[1]), "--adapter", str(adapter), "--out", str(tmp_path / "m")],
          "adapter is stored only as a pickle (adapter_model.bin)")


def test_damaged_annotations(pair, arith_jsonl, tmp_path, capsys):
    ann = do_annotate(pair[1], arith_jsonl, tmp_path / "ann")
    argv = ["train", "--model", str(pair[0]), "--data", str(ann), "--out", str(tmp_path / "ad")]
    parquet = (ann / "annotations.parquet").read_bytes()
    (ann / "annotations.parquet").write_bytes(parquet[: len(parquet) // 2])
    fails(capsys, argv, "damaged annotation")
    (ann / "annotations.parquet").unlink()
    fails(capsys, argv, "missing annotations.parquet; re-run gift annotate")
    assert not (tmp_path / "ad").exists() and not (tmp_path / "ad.partial").exists()


def test_annotation_needed_for_gift(pair, arith_jsonl, tmp_path, capsys):
    fails(capsys, ["train", "--model", str(pair[0]), "--data", str(arith_jsonl), "--out", str(tmp_path / "ad")],
          "--method gift needs teacher confidences: run gift annotate")


def test_adapter_targeting_a_missing_module(pair, arith_jsonl, tmp_path, capsys):
    adapter = do_train(pair[0], arith_jsonl, tmp_path / "ad", method="sft")
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file({k.replace("q_proj", "qq_proj"): v for k, v in tensors.items()}, adapter / "adapter_model.safetensors")
    fails(capsys, ["merge", "--instruct", str(pair[1]), "--adapter", str(adapter), "--out", str(tmp_path / "m")],
          "the adapter targets model.layers.0.self_attn.qq_proj, which the instruct model does not have")


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf"])
def test_scale_must_be_finite(pair, tmp_path, capsys, scale):
    fails(capsys, ["merge", "--instruct", str(pair[1]), "--adapter", str(tmp_path), "--out", str(tmp_path / "m"),
                   f"--scale={scale}"], "--scale must be a finite number")


def test_existing_output_needs_overwrite(pair, arith_jsonl, tmp_path, capsys):
    out = tmp_path / "ann"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["annotate", "--teacher", str(pair[1]), "--data", str(arith_jsonl), "--out", str(out)]
    fails(capsys, argv, "exists and is not empty; pass --overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    assert main(argv + ["--overwrite"]) == 0 and not (out / "keep.txt").exists()


def test_nan_loss_stops_with_step_rows_and_checkpoint(pair, arith_jsonl, tmp_path, capsys):
    from gift.train import step_indices
    ann = do_annotate(pair[1], arith_jsonl, tmp_path / "ann")
    table = pq.read_table(ann / "annotations.parquet").to_pydict()
    bad = step_indices(8, 1, 4, 0)[0]  # a row of the second step, so step 1 is checkpointed first
    table["confidence"][bad] = [float("nan") if y != -100 else 0.0 for y in table["labels"][bad]]
    pq.write_table(pa.table(table, schema=pq.read_schema(ann / "annotations.parquet")), ann / "annotations.parquet")
    err = fails(capsys, ["train", "--model", str(pair[0]), "--data", str(ann), "--out", str(tmp_path / "ad"),
                         "--rank", "4", "--batch-size", "4", "--max-steps", "2", "--save-steps", "1"],
                "non-finite loss at step 2 (source lines [")
    lines = json.loads(err.split("source lines ")[1].split(")")[0])
    assert table["line"][bad] in lines
    assert (tmp_path / "ad.partial" / "checkpoint" / "trainable.safetensors").exists()
    assert not (tmp_path / "ad").exists()
    state = torch.load(tmp_path / "ad.partial" / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 1


def test_mismatched_pair_in_a_run(make_pair, tmp_path, capsys, arith_jsonl):
    import yaml
    base, _ = make_pair("llama", True)
    _, other = make_pair("llama", True, layers=3)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"base": str(base), "instruct": str(other), "train_data": str(arith_jsonl),
                                   "benchmarks": [{"name": "x", "file": str(arith_jsonl)}]}))
    fails(capsys, ["run", str(cfg), "--out", str(tmp_path / "r")], "are not a pair: num_hidden_layers differs")


def test_small_things_a_user_trips_on(pair, arith_jsonl, tmp_path, capsys):
    base, instruct = pair
    fails(capsys, ["train", "--model", str(base), "--data", str(tmp_path / "ann-typo"), "--out", str(tmp_path / "a")],
          "not found")
    fails(capsys, ["train", "--model", str(base), "--data", str(arith_jsonl), "--out", str(tmp_path / "a"),
                   "--method", "sft", "--dtype", "float16"], "use bfloat16 or float32")
    long = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "a " * 80, "completion": "b"}])
    line = fails(capsys, ["annotate", "--teacher", str(instruct), "--data", str(long), "--out", str(tmp_path / "x"),
                          "--max-length", "32", "--truncate"], "no rows left")
    assert "pass --truncate" not in line
    fails(capsys, ["train", "--model", str(base), "--data", str(arith_jsonl), "--out", str(tmp_path / "a"),
                   "--method", "sft", "--target-modules", "embed_tokens", "q_proj"], "embedding layer")
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()


def test_compare_keeps_an_existing_plot_without_overwrite(pair, arith_jsonl, tmp_path, capsys):
    evals = []
    for name in ("e1", "e2"):
        assert main(["eval", "--model", str(pair[1]), "--bench", str(arith_jsonl), "--answer-field", "completion",
                     "--max-new-tokens", "4", "--out", str(tmp_path / name)]) == 0
        evals.append(str(tmp_path / name))
    assert main(["eval", "--compare", *evals, "--out", str(tmp_path / "cmp")]) == 0
    fails(capsys, ["eval", "--compare", *evals, "--out", str(tmp_path / "cmp")], "pass --overwrite")
    assert main(["eval", "--compare", *evals, "--out", str(tmp_path / "cmp"), "--overwrite"]) == 0


def test_loglik_choice_needs_options_on_their_own_lines(pair, tmp_path, capsys):
    bench = write_jsonl(tmp_path / "mc.jsonl", [{"question": "Where? A. x B. y C. z D. w", "reference": "B"}])
    fails(capsys, ["eval", "--model", str(pair[1]), "--bench", str(bench), "--kind", "choice", "--choice-mode", "loglik",
                   "--answer-field", "reference", "--out", str(tmp_path / "e")], "options on lines of their own")
    assert not (tmp_path / "e").exists()


def test_published_directories_follow_the_umask(tmp_path):
    import os

    from gift.atomic import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


GEMMA_STYLE = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
               "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PHI3_STYLE = ("{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
              "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("template, message", [(GEMMA_STYLE, "cannot render this conversation (System role not "
                                                              "supported); drop --system-prompt"),
                                               (PHI3_STYLE, "drops the system turn (it has no system role); drop")])
def test_a_template_without_a_system_role_is_refused_in_one_line(pair, tmp_path, capsys, arith_jsonl, template, message):
    _, instruct = pair
    (tmp_path / "t.jinja").write_text(template)
    fails(capsys, ["annotate", "--teacher", str(instruct), "--data", str(arith_jsonl), "--out", str(tmp_path / "ann"),
                   "--chat-template", str(tmp_path / "t.jinja"), "--system-prompt", "Be brief."], message)
    assert not (tmp_path / "ann").exists()
    assert main(["annotate", "--teacher", str(instruct), "--data", str(arith_jsonl), "--out", str(tmp_path / "ann"),
                 "--chat-template", str(tmp_path / "t.jinja")]) == 0  # without a system turn it renders


def test_rows_may_hold_unicode_line_separators(tmp_path):
    """U+2028, U+2029 and U+0085 are valid unescaped inside JSON strings (web text, saved completions)."""
    from gift.data import read_jsonl

    text = '{"prompt": "a\u2028b", "completion": "c\u2029d\u0085e"}\n{"prompt": "x", "completion": "y"}\r\n'
    path = tmp_path / "u.jsonl"
    path.write_text(text, encoding="utf-8")
    assert [(n, r["completion"]) for n, r in read_jsonl(path)] == [(1, "c\u2029d\u0085e"), (2, "y")]
