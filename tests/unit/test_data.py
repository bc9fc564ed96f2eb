import json

import pytest

from gift.data import IGNORE, STEP_BY_STEP, TemplateOptions, encode, encode_all, load_examples, read_jsonl, to_example
from gift.errors import GiftError


def test_formats_are_recognised():
    cases = [
        ({"prompt": "p", "completion": "c"}, "p", "c"),
        ({"instruction": "p", "response": "c"}, "p", "c"),
        ({"question": "p", "answer": "c"}, "p", "c"),
        ({"problem": "p", "solution": "c"}, "p", "c"),
        ({"messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]}, "p", "c"),
        ({"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]}, "p", "c"),
    ]
    for obj, prompt, response in cases:
        ex = to_example(obj, "f:1", 1)
        assert ex.prompt[-1]["content"] == prompt and ex.response == response


def test_named_fields(tmp_path):
    ex = to_example({"q": "p", "a": "c"}, "f:1", 1, prompt_field="q", response_field="a")
    assert (ex.prompt[0]["content"], ex.response) == ("p", "c")


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    (b"", "file is empty"),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n', ":2: malformed JSON"),
    (b'{"prompt": "a"}\n', ":1: no prompt/response fields"),
    (b'{"prompt": "a", "completion": "  "}\n', ":1: empty response"),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff\xfe"}\n', ":2: not valid UTF-8"),
    (b'[1, 2]\n', ":1: expected a JSON object"),
])
def test_bad_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GiftError, match=message):
        load_examples(path)


def test_blank_lines_are_skipped_and_lines_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('\n{"prompt": "a", "completion": "b"}\n\n{"prompt": "c", "completion": "d"}\n')
    assert [n for n, _ in read_jsonl(path)] == [2, 4]


def test_encode_masks_prompt_and_ends_at_end_of_turn(tokenizer):
    ex = to_example({"prompt": "Tom has 3 apples.", "completion": "The answer is 8."}, "f:1", 1)
    e = encode(tokenizer, ex, TemplateOptions())
    first = next(i for i, y in enumerate(e.labels) if y != IGNORE)
    assert tokenizer.decode(e.input_ids[:first]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(e.labels[first:]) == "The answer is 8.<|im_end|>"
    assert e.input_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")  # the template's trailing "\n" is cut
    assert all(y == IGNORE for y in e.labels[:first])


def test_system_prompt_and_suffix_are_options(tokenizer):
    ex = to_example({"prompt": "Add 2 and 3.", "completion": "5"}, "f:1", 1)
    e = encode(tokenizer, ex, TemplateOptions(system_prompt="Be brief.", suffix=STEP_BY_STEP))
    text = tokenizer.decode(e.input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert f"Add 2 and 3.\n{STEP_BY_STEP}<|im_end|>" in text


def test_long_rows_are_dropped_or_truncated_and_counted(tokenizer):
    exs = [to_example({"prompt": "a", "completion": "b " * n}, f"f:{n}", n) for n in (1, 200)]
    rows, report = encode_all(tokenizer, exs, TemplateOptions(), max_length=40, truncate=False)
    assert len(rows) == 1 and report.dropped["longer than max_length"] == 1
    rows, report = encode_all(tokenizer, exs, TemplateOptions(), max_length=40, truncate=True)
    assert len(rows) == 2 and report.truncated == 1 and len(rows[1].input_ids) == 40
    with pytest.raises(GiftError, match="no rows left"):
        encode_all(tokenizer, exs[1:], TemplateOptions(), max_length=10, truncate=False)


def test_real_data_files_parse():
    from tests.conftest import SHARED_DATA
    for name in ["numina_cot_2k.jsonl", "gsm8k_test.jsonl", "math500_test.jsonl"]:
        path = SHARED_DATA / name
        if not path.exists():
            pytest.skip("../shared/data not present")
        exs = load_examples(path)
        assert len(exs) == sum(1 for line in path.read_text().splitlines() if line.strip())
        assert all(ex.response.strip() for ex in exs)
    assert json.loads(path.read_text().splitlines()[0])


LLAMA2 = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] {{ m['content'] }} [/INST]"
          "{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}")


def test_end_of_turn_comes_from_the_template_not_the_data(tokenizer):
    """Truncated rows end on ordinary tokens; the end-of-turn ids are still the template's alone."""
    from gift.data import end_of_turn_ids

    opts = TemplateOptions()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(tokenizer, opts) == {im_end}
    examples = [to_example({"prompt": f"Tom has {a} apples", "completion": f"{a} + {a} = {2 * a}. " * 6}, "f", a)
                for a in range(8)]
    rows, report = encode_all(tokenizer, examples, opts, max_length=30, truncate=True)
    assert report.truncated == 8 and all(r.labels[-1] != im_end for r in rows)


def test_end_of_turn_after_template_text_is_labelled(tokenizer):
    """A Llama-2 style template writes ' ' + content + ' ' + eos: the eos is labelled, so the model learns to stop."""
    opts = TemplateOptions(chat_template=LLAMA2)
    ex = to_example({"prompt": "Tom has 3 apples", "completion": "3 + 3 = 6."}, "f", 1)
    enc = encode(tokenizer, ex, opts)
    assert enc.input_ids[-1] == tokenizer.eos_token_id and enc.labels[-1] == tokenizer.eos_token_id
    labelled = tokenizer.decode([y for y in enc.labels if y != IGNORE])
    assert labelled.strip().startswith("3 + 3 = 6.") and labelled.endswith(" " + tokenizer.eos_token)


GENERATION_MARKED = (  # ChatML with transformers' {% generation %} markers, as TRL's assistant_only_loss needs them
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_every_assistant_turn_of_a_messages_row_is_labelled_as_trl_does(tokenizer):
    """TRL's assistant_only_loss trains every assistant turn: the labels equal transformers' assistant mask
    (return_assistant_tokens_mask) on a three-turn conversation; a prompt/completion row labels its completion only."""
    msgs = [{"role": "user", "content": "Tom has 3 apples."}, {"role": "assistant", "content": "3 + 0 = 3."},
            {"role": "user", "content": "And buys 4 more?"}, {"role": "assistant", "content": "3 + 4 = 7. The answer is 7."},
            {"role": "user", "content": "Write a short list."}, {"role": "assistant", "content": "JSON, all caps."}]
    opts = TemplateOptions(chat_template=GENERATION_MARKED)
    e = encode(tokenizer, to_example({"messages": msgs}, "x:1", 1), opts)
    ref = tokenizer.apply_chat_template(msgs, chat_template=GENERATION_MARKED, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    mask = ref["assistant_masks"]
    n = len(e.input_ids)
    assert e.input_ids == ref["input_ids"][:n] and sum(mask[n:]) == 0  # only the closing newline is cut
    assert [y != IGNORE for y in e.labels] == [bool(m) for m in mask[:n]]
    assert sum(y == tokenizer.convert_tokens_to_ids("<|im_end|>") for y in e.labels) == 3  # each turn's end
    completion_only = encode(tokenizer, to_example({"prompt": msgs[:-1], "completion": msgs[-1]["content"]}, "x:1", 1),
                             opts)
    assert completion_only.input_ids == e.input_ids
    labelled = [y for y in completion_only.labels if y != IGNORE]
    assert tokenizer.decode(labelled) == "JSON, all caps.<|im_end|>"


def test_a_template_that_rewrites_earlier_turns_is_refused_for_multi_turn_rows(tokenizer):
    """Templates that drop past reasoning (Qwen3's strips <think> from earlier turns) render an earlier assistant
    turn differently once a later one follows: such rows cannot be labelled as written, and are refused."""
    drops_history = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                     "{% if m['role'] == 'assistant' and not loop.last %}{{ m['content'].split('</think>')[-1] }}"
                     "{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>x</think>1"},
            {"role": "user", "content": "b"}, {"role": "assistant", "content": "2"}]
    with pytest.raises(GiftError, match="renders earlier assistant turns differently"):
        encode(tokenizer, to_example({"messages": msgs}, "x:1", 1), TemplateOptions(chat_template=drops_history))
    single = to_example({"messages": msgs[:2]}, "x:1", 1)
    assert encode(tokenizer, single, TemplateOptions(chat_template=drops_history)).labels  # one turn: fine


def test_work_made_under_the_earlier_fingerprint_is_still_recognised(tokenizer):
    """meta.json and gift_train.json written before special roles left the fingerprint carry the earlier formula:
    the same vocabulary, accepted; another fingerprint is still refused."""
    from gift.errors import GiftError
    from gift.model import earlier_vocab_fingerprint, require_annotation_vocab, same_vocab, vocab_fingerprint

    earlier = earlier_vocab_fingerprint(tokenizer)
    assert earlier != vocab_fingerprint(tokenizer) and same_vocab(earlier, tokenizer)
    assert require_annotation_vocab({"vocab_fingerprint": earlier}, tokenizer, "ann", "base's") == \
        vocab_fingerprint(tokenizer)
    with pytest.raises(GiftError, match="would mean other text"):
        require_annotation_vocab({"vocab_fingerprint": "0" * 16}, tokenizer, "ann", "base's")
