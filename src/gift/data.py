"""Training data: JSONL records in the formats users have -> chat-templated token ids with label masks.

Accepted records (first match wins, or name the fields with `prompt_field`/`response_field`):
TRL's `messages` and `prompt`/`completion` (strings or message lists), and the field pairs of the
files in ../shared/data: `instruction`/`response`, `question`/`answer`, `problem`/`solution`.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import GiftError

IGNORE = -100  # label of positions that carry no loss (prompt, padding), as in Hugging Face
FIELD_PAIRS = [("prompt", "completion"), ("instruction", "response"), ("question", "answer"), ("problem", "solution")]
STEP_BY_STEP = "Please reason step by step, and put your final answer within \\boxed{}."  # the paper's suffix

Message = dict[str, str]


@dataclass
class Example:
    """One training example: the conversation up to the answer, and the answer itself."""

    prompt: list[Message]
    response: str
    line: int  # 1-based line in the source file, for error messages
    label_history: bool = False  # also label the assistant turns inside `prompt` (TRL's assistant_only_loss)


@dataclass
class TemplateOptions:
    """How an example becomes chat text; recorded in meta.json so later stages can check it."""

    system_prompt: str | None = None
    suffix: str | None = None  # appended to the last user turn, e.g. STEP_BY_STEP
    chat_template: str | None = None  # a Jinja template overriding the tokenizer's own


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt positions; the response tokens and the end-of-turn token otherwise
    line: int = 0  # source line, for error messages


@dataclass
class EncodeReport:
    """What happened to each row: kept, truncated or dropped, with the reason counted."""

    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Read (line number, object) pairs; blank lines are skipped, every other problem names its line."""
    path = Path(path)
    if not path.exists():
        raise GiftError(f"{path}: file not found")
    if path.is_dir():
        raise GiftError(f"{path}: is a directory; expected a .jsonl file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise GiftError(f"{path}:{line}: not valid UTF-8 (byte {e.start}); re-encode the file as UTF-8") from None
    rows = []
    # "\n" only: str.splitlines() also breaks at U+2028, U+2029 and U+0085, which JSON strings may hold unescaped
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GiftError(f"{path}:{number}: malformed JSON ({e.msg} at column {e.colno}); "
                            f"fix or remove the line") from None
        if not isinstance(obj, dict):
            raise GiftError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        rows.append((number, obj))
    if not rows:
        raise GiftError(f"{path}: file is empty; expected one JSON object per line")
    return rows


def _as_messages(value: Any, role: str, where: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise GiftError(f"{where}: expected a string or a list of {{role, content}} messages")


def to_example(obj: dict[str, Any], where: str, line: int, prompt_field: str | None = None,
               response_field: str | None = None) -> Example:
    """Normalise one record into an Example; `where` is 'file:line' for error messages."""
    if prompt_field or response_field:
        pairs = [(prompt_field or "prompt", response_field or "completion")]
    elif "messages" in obj:
        msgs = _as_messages(obj["messages"], "user", f"{where}: field 'messages'")
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise GiftError(f"{where}: 'messages' must end with an assistant turn after at least one other turn")
        return _checked(Example(msgs[:-1], msgs[-1]["content"], line, label_history=True), where)
    else:
        pairs = FIELD_PAIRS
    for p, r in pairs:
        if p in obj and r in obj:
            completion = obj[r]
            if isinstance(completion, list):  # TRL conversational completion: the assistant turn(s)
                completion = "".join(m["content"] for m in _as_messages(completion, "assistant", f"{where}: field '{r}'"))
            if not isinstance(completion, str):
                raise GiftError(f"{where}: field '{r}' must be a string")
            return _checked(Example(_as_messages(obj[p], "user", f"{where}: field '{p}'"), completion, line), where)
    names = " / ".join(f"{p}+{r}" for p, r in pairs)
    raise GiftError(f"{where}: no prompt/response fields found (looked for {names}, or 'messages'); "
                    f"name yours with --prompt-field and --response-field")


def _checked(ex: Example, where: str) -> Example:
    if not ex.response.strip():
        raise GiftError(f"{where}: empty response; remove the row or fill it in")
    if not ex.prompt or not any(m["content"].strip() for m in ex.prompt):
        raise GiftError(f"{where}: empty prompt; remove the row or fill it in")
    return ex


def load_examples(path: str | Path, prompt_field: str | None = None, response_field: str | None = None) -> list[Example]:
    """Read and validate every row of a JSONL file before any model work starts."""
    return [to_example(obj, f"{path}:{n}", n, prompt_field, response_field) for n, obj in read_jsonl(path)]


def prompt_messages(ex: Example, opts: TemplateOptions) -> list[Message]:
    """The conversation shown to the model: optional system prompt, suffix on the last user turn."""
    msgs = [dict(m) for m in ex.prompt]
    if opts.suffix:
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        last_user = users[-1] if users else -1
        msgs[last_user]["content"] = f"{msgs[last_user]['content']}\n{opts.suffix}"
    if opts.system_prompt is not None and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": opts.system_prompt})
    return msgs


def check_template(tokenizer: Any, opts: TemplateOptions, name: str) -> None:
    if opts.chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise GiftError(f"{name}: tokenizer has no chat template; pass --chat-template FILE (a Jinja template) "
                        f"or use the instruct model's tokenizer")


def render(tokenizer: Any, messages: list[Message], opts: TemplateOptions, add_generation_prompt: bool) -> str:
    """Chat text for `messages` through the tokenizer's (or the user's) template. A template that raises (Gemma's
    has no system role) or silently drops a system turn (Phi-3's) is refused in one line."""
    from jinja2 import TemplateError

    which = "--chat-template" if opts.chat_template else "the tokenizer's chat template"
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"].strip()]
    fix = ("drop --system-prompt (or the system turn), or pass a --chat-template that has a system role" if system
           else "pass a --chat-template that renders it")
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             chat_template=opts.chat_template)
    except TemplateError as e:
        raise GiftError(f"{which} cannot render this conversation ({str(e).splitlines()[0]}); {fix}") from None
    if any(s.strip() not in text for s in system):
        raise GiftError(f"{which} drops the system turn (it has no system role); {fix}")
    return text


def end_of_turn_ids(tokenizer: Any, opts: TemplateOptions) -> set[int]:
    """The id of the token the chat template closes an assistant turn with (`<|im_end|>`, `<|eot_id|>`,
    `</s>`, ...): the first special token after the response in a rendered probe conversation, else eos.
    Read from the template, never from the data: a truncated row ends on an ordinary token."""
    probe = "gift probe answer"
    text = render(tokenizer, [{"role": "user", "content": "gift probe"}, {"role": "assistant", "content": probe}],
                  opts, add_generation_prompt=False)
    end = text.rfind(probe) + len(probe)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    found = next((t for t, (s, _) in zip(enc["input_ids"], enc["offset_mapping"]) if s >= end and t in special), None)
    if found is None and tokenizer.eos_token_id is None:
        raise GiftError("the chat template closes an assistant turn with no special token and the tokenizer has no "
                        "eos token; pass a --chat-template that ends turns with one")
    return {found if found is not None else tokenizer.eos_token_id}


def encode(tokenizer: Any, ex: Example, opts: TemplateOptions, eot_ids: set[int] | None = None) -> Encoded:
    """Token ids of the conversation + response + end-of-turn, labels masking everything but the response (and,
    for `messages` rows, every earlier assistant turn, as TRL's assistant_only_loss trains them).

    Each labelled turn runs from its first token up to and including the template's end-of-turn token, with
    whatever the template writes in between (Llama-2 puts a space before `</s>`); what follows the last turn's
    end-of-turn token (a newline) is cut off. Without an end-of-turn token after the response, eos is appended.
    """
    eot_ids = end_of_turn_ids(tokenizer, opts) if eot_ids is None else eot_ids
    msgs = prompt_messages(ex, opts) + [{"role": "assistant", "content": ex.response}]
    full_text = render(tokenizer, msgs, opts, add_generation_prompt=False)
    turns = [k for k, m in enumerate(msgs) if m["role"] == "assistant" and (ex.label_history or k == len(msgs) - 1)]
    spans = [_turn_span(tokenizer, msgs, k, opts, full_text, ex.line) for k in turns]  # (prompt end, response end)
    enc = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    labels = [IGNORE] * len(ids)
    for j, (prompt_end, response_end) in enumerate(spans):
        first = next(i for i, (s, e) in enumerate(offsets) if e > prompt_end)
        bound = next((i for i, (s, e) in enumerate(offsets) if e > spans[j + 1][0]), len(ids)) if j + 1 < len(spans) \
            else len(ids)  # an earlier turn's end-of-turn token lies before the next turn's prompt ends
        eot = next((i for i in range(first, bound) if offsets[i][0] >= response_end and ids[i] in eot_ids), None)
        last = eot if eot is not None else max(i for i, (s, e) in enumerate(offsets) if s < response_end)
        if j == len(spans) - 1:  # the final turn: drop what follows its end-of-turn token, or append one
            ids, labels = (ids[: last + 1], labels[: last + 1]) if eot is not None else \
                (ids[: last + 1] + [next(iter(eot_ids))], labels[: last + 1] + [IGNORE])
            last = len(ids) - 1
        labels[first: last + 1] = ids[first: last + 1]
    return Encoded(ids, labels, ex.line)


def _turn_span(tokenizer: Any, msgs: list[Message], k: int, opts: TemplateOptions, full_text: str,
               line: int) -> tuple[int, int]:
    """(end of the prompt before assistant turn k, end of its content) as character offsets in `full_text`."""
    prompt_text = render(tokenizer, msgs[:k], opts, add_generation_prompt=True)
    if not full_text.startswith(prompt_text):
        raise GiftError(f"line {line}: the chat template does not render the prompt as a prefix of the conversation; "
                        f"pass a simpler --chat-template")
    turn_text = full_text if k == len(msgs) - 1 else render(tokenizer, msgs[: k + 1], opts, add_generation_prompt=False)
    content = msgs[k]["content"]
    # some templates strip the response's surrounding whitespace: then look for the stripped text
    content = content if content in turn_text[len(prompt_text):] else content.strip()
    start = turn_text.find(content, len(prompt_text))
    if start < 0:
        raise GiftError(f"line {line}: the chat template rewrites the response text; pass a simpler --chat-template")
    if not full_text.startswith(turn_text[: start + len(content)]):
        raise GiftError(f"line {line}: the chat template renders earlier assistant turns differently from the last (as "
                        f"templates that drop past reasoning do), so they cannot be labelled as written; give one "
                        f"assistant turn per row, or pass a simpler --chat-template")
    return len(prompt_text), start + len(content)


def encode_all(tokenizer: Any, examples: list[Example], opts: TemplateOptions, max_length: int,
               truncate: bool) -> tuple[list[Encoded], EncodeReport]:
    """Encode every example; rows over `max_length` are truncated or dropped and counted, never silently."""
    report, out = EncodeReport(), []
    eot_ids = end_of_turn_ids(tokenizer, opts)
    for ex in examples:
        e = encode(tokenizer, ex, opts, eot_ids)
        if len(e.input_ids) > max_length:
            n_prompt = sum(1 for label in e.labels if label == IGNORE)
            if not truncate:
                report.dropped["longer than max_length"] += 1
                continue
            if n_prompt >= max_length:
                report.dropped["prompt alone longer than max_length"] += 1
                continue
            e = Encoded(e.input_ids[:max_length], e.labels[:max_length], e.line)
            report.truncated += 1
        out.append(e)
        report.kept += 1
    if not out:
        reasons = ", ".join(f"{n} {why}" for why, n in report.dropped.items())
        fix = "raise --max-length" if truncate else "raise --max-length or pass --truncate"
        raise GiftError(f"no rows left after encoding ({reasons}); {fix}")
    return out, report


def template_options(system_prompt: str | None, suffix: str | None, chat_template: str | None) -> TemplateOptions:
    """TemplateOptions from CLI values; `chat_template` is a file path whose text is read here."""
    text = None
    if chat_template:
        path = Path(chat_template)
        if not path.is_file():
            raise GiftError(f"--chat-template {path}: file not found")
        text = path.read_text()
    return TemplateOptions(system_prompt, suffix, text)


def pad_batch(rows: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) tensors; padding is masked out of attention and labels."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r.input_ids), torch.tensor(r.labels), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack_batch(rows: list[Encoded]) -> dict[str, torch.Tensor]:
    """The rows end to end in one (1, ΣT) row, padding-free as transformers' DataCollatorWithFlattening lays them
    out: `position_ids` restart at each row (the model's attention keeps rows apart by them) and each row's first
    label is dropped, so no row predicts the next one's first token. No attention_mask: transformers reads the
    packing from position_ids only when the mask is absent."""
    ids = torch.tensor([t for r in rows for t in r.input_ids])[None]
    labels = torch.tensor([t for r in rows for t in [IGNORE, *r.labels[1:]]])[None]
    positions = torch.cat([torch.arange(len(r.input_ids)) for r in rows])[None]
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def weighted_batch(rows: list[Encoded], conf: list[list[float]] | None, eot_ids: set[int], pad_id: int,
                   packed: bool = False) -> dict[str, torch.Tensor]:
    """pad_batch (or pack_batch) plus, flat over the labelled tokens in row-major order (GoldLogprobs' output
    order, the same in both layouts), the teacher's confidence `q` (ones without an annotation) and `is_eot`."""
    batch = pack_batch(rows) if packed else pad_batch(rows, pad_id)
    per_row = [torch.ones(len(r.input_ids)) for r in rows]
    for qr, c in zip(per_row, conf or []):
        qr[: len(c)] = torch.tensor(c)
    q = torch.cat(per_row)[None] if packed else torch.nn.utils.rnn.pad_sequence(per_row, batch_first=True)
    target_mask = batch["labels"][:, 1:] != IGNORE
    targets = batch["labels"][:, 1:][target_mask]
    batch["q"] = q[:, 1:][target_mask]
    batch["is_eot"] = torch.isin(targets, torch.tensor(sorted(eot_ids)))
    return batch


@dataclass
class GIFTCollator:
    """A Trainer/TRL data collator: pads `input_ids`, `labels` and `confidence` together (see weighted_batch), or
    packs them padding-free (`padding_free=True`, see pack_batch); rows without `confidence` get q = 1."""

    pad_token_id: int
    eot_token_ids: list[int]
    padding_free: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [Encoded(list(f["input_ids"]), list(f["labels"])) for f in features]
        conf = [list(f["confidence"]) for f in features] if "confidence" in features[0] else None
        return weighted_batch(rows, conf, set(self.eot_token_ids), self.pad_token_id, self.padding_free)
