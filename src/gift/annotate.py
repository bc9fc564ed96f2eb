"""gift annotate: one teacher-forced pass of the instruct model over the training data.

Writes annotations.parquet (input_ids, labels, confidence, line) and meta.json. Confidence q_t is
p_teacher(y_t | x, y_<t) at every labelled position and 0 elsewhere, aligned with `labels`.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from . import __version__
from .atomic import atomic_dir, check_out_dir, write_text_atomic
from .config import AnnotateConfig, to_dict
from .data import (
    IGNORE,
    Encoded,
    check_template,
    encode_all,
    end_of_turn_ids,
    load_examples,
    pad_batch,
    template_options,
)
from .errors import GiftError
from .loss import GoldLogprobs
from .model import (
    load_model,
    load_tokenizer,
    require_annotation_vocab,
    special_tokens,
    template_fingerprint,
    vocab_fingerprint,
)
from .official import EOT_CONFIDENCE, confidence_to_scores, official_row, read_scores, scores_to_confidence

ANNOTATIONS, META = "annotations.parquet", "meta.json"
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                    ("confidence", pa.list_(pa.float32())), ("line", pa.int32())])


@torch.inference_mode()
def confidences(model: Any, rows: list[Encoded], pad_id: int, batch_size: int) -> list[list[float]]:
    """q_t at every position of every row (0 where unlabelled), batching rows of similar length."""
    scorer = GoldLogprobs(model)
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    out: list[list[float]] = [[] for _ in rows]
    for s in tqdm(range(0, len(order), batch_size), desc="annotate", unit="batch"):
        idx = order[s:s + batch_size]
        batch = {k: v.to(device) for k, v in pad_batch([rows[i] for i in idx], pad_id).items()}
        q = scorer(**batch).exp().cpu()
        conf = torch.zeros(batch["labels"].shape, dtype=torch.float32)
        conf[:, 1:][batch["labels"][:, 1:].cpu() != IGNORE] = q  # position t holds p(token t | tokens < t)
        for j, i in enumerate(idx):
            out[i] = conf[j, : len(rows[i].input_ids)].tolist()
    return out


def annotate(cfg: AnnotateConfig) -> Path:
    t0 = time.time()
    check_out_dir(cfg.out, cfg.overwrite)
    examples = load_examples(cfg.data, cfg.prompt_field, cfg.response_field)
    opts = template_options(cfg.system_prompt, cfg.suffix, cfg.chat_template)
    tokenizer = load_tokenizer(cfg.teacher)
    check_template(tokenizer, opts, cfg.teacher)
    if cfg.export_official:  # refused before any model work: the format holds one user turn and its response
        for ex in examples:
            official_row(ex.prompt, ex.response, [], f"{cfg.data}:{ex.line}")
    rows, report = encode_all(tokenizer, examples, opts, cfg.max_length, cfg.truncate)
    eot_ids = end_of_turn_ids(tokenizer, opts)
    if cfg.official:  # q made by the paper's script: the teacher's tokenizer only aligns them
        conf = scores_to_confidence(rows, read_scores(cfg.data), eot_ids, str(cfg.data))
    else:
        model = load_model(cfg.teacher, cfg.dtype, cfg.trust_pickle)
        if torch.cuda.is_available():
            model.cuda()
        conf = confidences(model, rows, tokenizer.pad_token_id, cfg.batch_size)
    table = pa.table({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows],
                      "confidence": conf, "line": [r.line for r in rows]}, schema=SCHEMA)
    labelled = [q for r, c in zip(rows, conf) for q, y in zip(c, r.labels) if y != IGNORE]
    meta = {
        "gift_version": __version__,
        "teacher": cfg.teacher,
        "scores": f"imported from the paper's format ({cfg.data}); end-of-turn q set to {EOT_CONFIDENCE}"
                  if cfg.official else "computed by gift annotate",
        "source": str(cfg.data),
        "source_sha256": hashlib.sha256(Path(cfg.data).read_bytes()).hexdigest(),
        "vocab_fingerprint": vocab_fingerprint(tokenizer),
        "special_tokens": special_tokens(tokenizer),
        "template_fingerprint": template_fingerprint(opts.chat_template or tokenizer.chat_template),
        "eot_token_ids": sorted(eot_ids),
        "template": {"system_prompt": opts.system_prompt, "suffix": opts.suffix, "chat_template": opts.chat_template},
        "max_length": cfg.max_length,
        "truncate": cfg.truncate,
        "rows": len(rows),
        "rows_in_source": len(examples),
        "rows_truncated": report.truncated,
        "rows_dropped": dict(report.dropped),
        "tokens": sum(len(r.input_ids) for r in rows),
        "labelled_tokens": len(labelled),
        "mean_confidence": sum(labelled) / max(len(labelled), 1),
        "share_confidence_below_0.5": sum(q < 0.5 for q in labelled) / max(len(labelled), 1),
        "config": {k: v for k, v in to_dict(cfg).items() if k not in ("out", "overwrite")},  # where, not how
    }
    if cfg.export_official:
        by_line = {ex.line: ex for ex in examples}
        lines = [json.dumps(official_row(by_line[r.line].prompt, by_line[r.line].response,
                                         confidence_to_scores(r, c, eot_ids), f"{cfg.data}:{r.line}")) + "\n"
                 for r, c in zip(rows, conf)]
    with atomic_dir(cfg.out, cfg.overwrite) as tmp:
        pq.write_table(table, tmp / ANNOTATIONS)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if cfg.export_official:
            write_text_atomic(Path(cfg.export_official), "".join(lines))
    print(f"annotated {len(rows)} rows ({meta['labelled_tokens']} labelled tokens, mean q {meta['mean_confidence']:.3f}) "
          f"in {time.time() - t0:.1f}s -> {cfg.out}")
    return Path(cfg.out)


def read_annotations(path: str | Path) -> tuple[list[Encoded], list[list[float]], dict[str, Any]]:
    """(rows, confidences, meta) of an annotation directory, checked for missing or damaged files."""
    path = Path(path)
    for name in (ANNOTATIONS, META):
        if not (path / name).is_file():
            raise GiftError(f"{path}: missing {name}; re-run gift annotate into a fresh --out")
    try:
        meta = json.loads((path / META).read_text())
        table = pq.read_table(path / ANNOTATIONS)
    except (json.JSONDecodeError, pa.ArrowInvalid, OSError) as e:
        raise GiftError(f"{path}: damaged annotation ({str(e).splitlines()[0]}); re-run gift annotate") from None
    if not set(SCHEMA.names) <= set(table.column_names) or table.num_rows != meta.get("rows"):
        raise GiftError(f"{path}: annotation does not match its meta.json (columns or row count); re-run gift annotate")
    cols = table.to_pydict()
    rows = [Encoded(i, y, n) for i, y, n in zip(cols["input_ids"], cols["labels"], cols["line"])]
    return rows, cols["confidence"], meta


def load_annotations(path: str | Path, tokenizer: Any = None) -> Any:
    """An annotation directory as a `datasets.Dataset` (input_ids, labels, confidence, line), for TRL or your own
    loop. With `tokenizer`, refuses one whose vocabulary differs from the annotation's (its ids would mean other
    text). The annotation's meta.json rides along as `json.loads(dataset.info.description)`."""
    import datasets

    _, _, meta = read_annotations(path)  # the same checks as gift train
    if tokenizer is not None:
        require_annotation_vocab(meta, tokenizer, path, "this tokenizer")
    table = datasets.table.InMemoryTable(pq.read_table(Path(path) / ANNOTATIONS))
    return datasets.Dataset(table, info=datasets.DatasetInfo(description=json.dumps(meta)))
