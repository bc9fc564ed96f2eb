"""gift check-pair: before any training, whether a base/instruct pair (and a data set) can transfer.

Every failure this project met was visible beforehand: an instruct model far from its base, a base whose chat-marker
rows were never trained, a teacher that finds most task tokens unlikely. Findings carry mergekit's levels: ERROR
(cannot work; the command exits 2 and writes nothing), WARNING (likely to fail, with the reason and what to do),
INFO (figures). Weights are streamed tensor by tensor from safetensors shards, so a 7B pair checks in one tensor's
memory; GGUF or pickled weights are loaded whole.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_dir, check_out_dir
from .config import CheckConfig, to_dict
from .data import (
    IGNORE,
    TemplateOptions,
    check_template,
    encode_all,
    end_of_turn_ids,
    load_examples,
    render,
    template_options,
)
from .errors import GiftError
from .model import (
    SHAPE_KEYS,
    load_config,
    load_model,
    load_tokenizer,
    model_shape,
    require_annotation_vocab,
    special_token_notes,
    special_tokens,
    vocab_fingerprint,
    weight_files,
)
from .preconditions import (
    MIN_DECISIONS,
    RUNAWAY_MAJORITY,
    RUNAWAY_WEIGHT,
    branch_inversions,
    is_runaway,
    loss_shares,
    low_q_carriers,
)
from .weighting import WeightParams, gift_weights, token_weights

# Thresholds, each from a measurement (README, "gift check-pair"):
FAR = 0.3  # relative Frobenius distance: this project's pairs transferred at 0.029-0.18 and failed at 0.51
UNTRAINED_MAX = 1e-16  # unsloth's fix_untrained_tokens: a row whose largest entry is <= 1e-16 was never trained
NORM_RATIO = (0.25, 2.5)  # a row this far from the median row norm: this project's W6 base had 3.3x on its markers
UNLIKELY = 0.5  # q below which the teacher finds a token unlikely (the paper's split)
ADAPTER_LARGE = 0.5  # ‖ΔW‖/‖W_I − W_B‖ above which an adapter rivals instruction tuning (docs/experiments.md, P5)
ROPE_KEYS = ("rope_theta", "rope_scaling", "max_position_embeddings")
# first match wins: norms before attention, since `post_attention_layernorm` is a norm
FAMILIES = (("embeddings", ("embed_tokens", "wte", "word_embeddings")), ("lm_head", ("lm_head",)),
            ("norms", ("norm", "ln_")), ("attention", ("attn", "attention")), ("mlp", ("mlp", "feed_forward")))


@dataclass
class Finding:
    level: str  # ERROR, WARNING or INFO
    topic: str
    message: str


def family_of(name: str) -> str:
    return next((f for f, keys in FAMILIES if any(k in name for k in keys)), "other")


def layer_of(name: str) -> int | None:
    m = re.search(r"\.(?:layers|h|blocks)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


@dataclass
class Weight:
    """One stored tensor: its shape, and rows [start, end) read on demand (safetensors reads only those bytes)."""

    shape: tuple[int, ...]
    rows: Any  # (start, end) -> torch.Tensor


def tensors(source: str, trust_pickle: bool) -> dict[str, Weight]:
    """{name: Weight} for every weight. A safetensors read opens its shard, reads a slice and closes it again, so
    that going through them holds one slice at a time (a shard kept mapped would keep every page read resident)."""
    from safetensors import safe_open

    shards = weight_files(source)
    if shards is None:
        state = load_model(source, "float32", trust_pickle).state_dict()
        return {n: Weight(tuple(state[n].shape), lambda a, b, t=state[n]: t.reshape(-1)[a:b] if t.ndim == 0 else t[a:b])
                for n in distinct_tensors(state)}

    def read(shard: Path, name: str, a: int, b: int) -> torch.Tensor:
        with safe_open(shard, framework="pt") as f:
            part = f.get_slice(name)
            # a 0-d tensor (FP8 and KV-cache scales such as k_scale) cannot be sliced: read whole, as one row
            return f.get_tensor(name).reshape(1) if not part.get_shape() else part[a:b]

    out = {}
    for shard in shards:
        with safe_open(shard, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        out.update({n: Weight(shape, lambda a, b, shard=shard, n=n: read(shard, n, a, b)) for n, shape in shapes.items()})
    return out


def distinct_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of a state dict, in order, less the aliases of a tensor already named (a tied lm_head is the
    embedding again): each stored tensor counted or merged once, under the first name, as safetensors store it."""
    seen: set[int] = set()
    names = []
    for name, tensor in state.items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            names.append(name)
    return names


def row_chunks(w: Weight, elements: int = 1 << 22) -> list[tuple[int, int]]:
    """[start, end) row ranges of at most `elements` values each (a 0-d or 1-d tensor is one range)."""
    if len(w.shape) < 2:
        return [(0, w.shape[0] if w.shape else 1)]
    step = max(1, elements // max(1, math.prod(w.shape[1:])))
    return [(a, min(a + step, w.shape[0])) for a in range(0, w.shape[0], step)]


class Distance:
    """Running sums of ‖I − B‖², ‖B‖², Σ|I − B| and Σ|I| + Σ|B| (Shadow-FT's σ) per group of tensors."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, groups: tuple[str, ...], base: Weight, instruct: Weight) -> None:
        """Accumulate one tensor pair slice by slice, in float64 (a 151,936 x 896 embedding is never read whole)."""
        sums = [0.0, 0.0, 0.0, 0.0]
        for a, e in row_chunks(base):
            b, i = base.rows(a, e).double(), instruct.rows(a, e).double()
            d = i - b
            sums[0] += float(d.pow(2).sum())
            sums[1] += float(b.pow(2).sum())
            sums[2] += float(d.abs().sum())
            sums[3] += float(i.abs().sum() + b.abs().sum())
        for group in groups:
            s = self.sums.setdefault(group, [0.0, 0.0, 0.0, 0.0])
            for k in range(4):
                s[k] += sums[k]

    def figures(self) -> dict[str, dict[str, float]]:
        """group -> {relative (Frobenius, ‖I − B‖/‖B‖), sigma (Σ|I − B| / (Σ|I| + Σ|B|)), difference (‖I − B‖)}."""
        return {g: {"relative": (s[0] / s[1]) ** 0.5 if s[1] else 0.0, "sigma": s[2] / s[3] if s[3] else 0.0,
                    "difference": s[0] ** 0.5} for g, s in self.sums.items()}


def weight_distance(base: dict[str, Weight], instruct: dict[str, Weight], adapted: set[str]
                    ) -> tuple[dict[str, Any], list[Finding]]:
    """Distances overall, per family, per layer and over the `adapted` tensors (an adapter's, for P5), streamed;
    missing or reshaped tensors are errors."""
    dist, findings, seen = Distance(), [], set()
    for name, i in instruct.items():
        if name not in base:
            findings.append(Finding("ERROR", "weights", f"instruct has {name}, which base does not"))
            continue
        seen.add(name)
        b = base[name]
        if i.shape != b.shape:
            findings.append(Finding("ERROR", "weights", f"{name}: shape {b.shape} in base, {i.shape} in instruct"))
            continue
        layer = layer_of(name)
        dist.add(("all", f"family:{family_of(name)}", *([f"layer:{layer}"] if layer is not None else []),
                  *(["adapted"] if name in adapted else [])), b, i)
    findings += [Finding("ERROR", "weights", f"base has {n}, which instruct does not") for n in sorted(set(base) - seen)]
    figures = dist.figures()
    out = {"all": figures.get("all", {"relative": 0.0, "sigma": 0.0}),
           "families": {k.split(":", 1)[1]: v for k, v in figures.items() if k.startswith("family:")},
           "layers": dict(sorted((int(k.split(":", 1)[1]), v) for k, v in figures.items() if k.startswith("layer:"))),
           **({"adapted": figures.get("adapted", {"relative": 0.0, "sigma": 0.0, "difference": 0.0})} if adapted else {})}
    rel = out["all"]["relative"]
    fams = ", ".join(f"{f} {v['relative']:.3f}" for f, v in out["families"].items())
    findings.append(Finding("INFO", "distance", f"‖W_I − W_B‖/‖W_B‖ = {rel:.4f} (σ = {out['all']['sigma']:.4f}); "
                                                f"{fams}"))
    if rel == 0.0:
        findings.append(Finding("INFO", "distance", "base and instruct are the same weights: an adapter merged into "
                                                    "instruct acts as on base"))
    elif rel > FAR:
        findings.append(Finding("WARNING", "distance", f"instruct is far from base ({rel:.3f} > {FAR}): an adapter "
                                f"trained on base is unlikely to carry over (this project's pairs transferred at "
                                f"0.029-0.18 and failed at 0.51); check that these are twins, or train on instruct"))
    return out, findings


def template_token_ids(tokenizer: Any, opts: TemplateOptions) -> list[int]:
    """The ids the instruct chat template writes around the content of a probe conversation (its markers)."""
    turns = [{"role": "user", "content": "gift probe question"}, {"role": "assistant", "content": "gift probe answer"}]
    try:
        text = render(tokenizer, [{"role": "system", "content": "gift probe system"}, *turns], opts, False)
    except GiftError:  # a template without a system role
        text = render(tokenizer, turns, opts, False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    content = [(m.start(), m.end()) for m in re.finditer(r"gift probe (?:question|answer|system)", text)]
    inside = [any(s >= a and e <= b for a, b in content) for s, e in enc["offset_mapping"]]
    return sorted({t for t, i in zip(enc["input_ids"], inside) if not i})


def embedding_rows(weights: dict[str, Weight]) -> dict[str, Weight]:
    """{'embeddings': (V, H), 'lm_head': (V, H) when untied} of a model's stored weights."""
    wanted = {}
    for name, w in weights.items():
        fam = family_of(name)
        if fam in ("embeddings", "lm_head") and name.endswith("weight") and fam not in wanted and len(w.shape) == 2:
            wanted[fam] = w
    return wanted


def untrained_rows(base: dict[str, Weight], base_tok: Any, instruct_tok: Any, opts: TemplateOptions,
                   data_ids: set[int]) -> tuple[dict[str, Any], list[Finding]]:
    """For every token the instruct template writes (and every special token in the data): is its row in base's
    embedding (and untied lm_head) trained? Unsloth's criterion (row max <= 1e-16) and a norm outlier test."""
    rows = embedding_rows(base)
    if "embeddings" not in rows:
        return {}, [Finding("INFO", "rows", "no input embedding found in base's weights; rows not checked")]
    ids = sorted(set(template_token_ids(instruct_tok, opts)) | data_ids)
    report, bad = {}, []
    for fam, w in rows.items():
        n = min(len(base_tok), w.shape[0])
        norms = torch.cat([w.rows(a, e).float().norm(dim=1) for a, e in row_chunks(w) if a < n])[:n]  # real tokens
        median = float(norms.median())
        for i in ids:
            if i >= n:
                continue
            ratio = float(norms[i]) / median if median else 0.0
            zero = float(w.rows(i, i + 1).float().max()) <= UNTRAINED_MAX
            outlier = not NORM_RATIO[0] <= ratio <= NORM_RATIO[1]
            token = base_tok.convert_ids_to_tokens(i)
            report.setdefault(token, {})[fam] = {"id": i, "norm_ratio": round(ratio, 3), "max_le_1e-16": zero}
            if zero or outlier:
                bad.append((token, fam, "never trained (row max <= 1e-16)" if zero else f"{ratio:.1f}x the median norm"))
    findings = [Finding("INFO", "rows", f"checked {len(ids)} template and data tokens in base's "
                                        f"{' and '.join(rows)}")]
    if bad:
        listed = "; ".join(f"{t} in {fam}: {why}" for t, fam, why in bad[:6]) + (" …" if len(bad) > 6 else "")
        findings.append(Finding("WARNING", "rows", f"base never learned rows of the instruct template's tokens ({listed}): "
                                f"training on base then reads chat markers base cannot read, and this project's base "
                                f"with such rows did not transfer; train on data rendered without the instruct "
                                f"template, re-initialise those rows to the trained rows' mean (unsloth's "
                                f"fix_untrained_tokens), or choose a base that read the markers in pretraining"))
    return report, findings


def data_figures(cfg: CheckConfig, instruct_tok: Any, opts: TemplateOptions) -> tuple[dict[str, Any], list[Finding],
                                                                                     set[int]]:
    """The teacher's view of the data: confidences (an annotation as it is, or JSONL scored here by instruct)."""
    from .annotate import confidences, read_annotations

    path = Path(cfg.data)
    if path.is_dir():
        rows, conf, meta = read_annotations(path)
        require_annotation_vocab(meta, instruct_tok, f"--data {path}", "instruct's")  # as gift train refuses it
        max_length = meta.get("max_length", cfg.max_length)  # what the annotation was cut by, not the flag's default
        eot = set(meta["eot_token_ids"])
        dropped, truncated, source_rows = sum(meta.get("rows_dropped", {}).values()), meta.get("rows_truncated", 0), \
            meta.get("rows_in_source", len(rows))
    else:
        check_template(instruct_tok, opts, cfg.instruct)
        examples = load_examples(path, cfg.prompt_field, cfg.response_field)
        rows, report = encode_all(instruct_tok, examples, opts, cfg.max_length, cfg.truncate)
        max_length = cfg.max_length
        model = load_model(cfg.instruct, cfg.dtype, cfg.trust_pickle)
        conf = confidences(model, rows, instruct_tok.pad_token_id, cfg.batch_size)
        eot, dropped, truncated, source_rows = end_of_turn_ids(instruct_tok, opts), sum(report.dropped.values()), \
            report.truncated, len(examples)
    q, is_eot, ends = [], [], 0
    for r, c in zip(rows, conf):
        labelled = [(y, p) for y, p in zip(r.labels, c) if y != IGNORE]
        q += [p for _, p in labelled]
        is_eot += [y in eot for y, _ in labelled]
        ends += bool(labelled) and labelled[-1][0] in eot
    qt, et = torch.tensor(q), torch.tensor(is_eot)
    base_model = load_model(cfg.base, cfg.dtype, cfg.trust_pickle)  # step 0 of training: the adapter is zero
    p_base = torch.tensor([p for r, c in zip(rows, confidences(base_model, rows, instruct_tok.pad_token_id,
                                                               cfg.batch_size))
                           for y, p in zip(r.labels, c) if y != IGNORE])
    del base_model
    pre, pre_findings = precondition_figures(rows, conf, qt, p_base, et, eot, instruct_tok)
    low = qt < UNLIKELY
    shares = {}
    for gamma in (0.5, 1.0, 2.0):
        w = token_weights("gift", qt, et, None, WeightParams(gamma, 1e-4, 0.6))
        shares[f"{gamma:g}"] = float(w[low].sum() / w.sum())
    specials = {i for r in rows for i in r.input_ids} & set(instruct_tok.added_tokens_decoder)
    figures = {"rows": len(rows), "rows_in_source": source_rows, "rows_dropped": dropped, "rows_truncated": truncated,
               "labelled_tokens": len(q), "mean_confidence": float(qt.mean()), "share_below_0.5": float(low.float().mean()),
               "gift_weight_share_below_0.5": shares, "rows_ending_on_end_of_turn": ends / max(len(rows), 1),
               "paper": {"shadow_ft_loss_share_below_0.5": 0.797, "gift_loss_share_below_0.5": 0.296},
               "preconditions": pre}
    share = figures["share_below_0.5"]
    findings = [Finding("INFO", "data", f"{len(rows)} rows, {len(q)} labelled tokens; teacher's mean q "
                                        f"{figures['mean_confidence']:.3f}; q < 0.5 on {share:.1%} of tokens, which get "
                                        f"{shares['1']:.1%} of GIFT's weight at γ = 1 (γ 0.5: {shares['0.5']:.1%}, "
                                        f"γ 2: {shares['2']:.1%}). The paper's 79.7% (Shadow-FT) and 29.6% (GIFT) are "
                                        f"shares of the weighted loss, not of the weight: gift train logs those per "
                                        f"step (low_conf_loss_share)")]
    if share > 0.5:
        findings.append(Finding("WARNING", "data", f"the teacher finds most of the data unlikely ({share:.0%} of tokens "
                                f"at q < 0.5): GIFT then learns from few tokens (this project's pair at 65% carried "
                                f"only style); expect Shadow-FT or Instruct-SFT to learn more of the task"))
    if dropped or truncated:
        findings.append(Finding("WARNING", "data", f"{dropped} rows dropped and {truncated} truncated by --max-length "
                                                   f"{max_length}; raise it to train on whole rows"))
    if figures["rows_ending_on_end_of_turn"] < 1:
        findings.append(Finding("WARNING", "data", f"{1 - figures['rows_ending_on_end_of_turn']:.0%} of rows do not end "
                                                   f"on the end-of-turn token (truncated): the merged model may not "
                                                   f"learn to stop"))
    return figures, findings + pre_findings, specials


def precondition_figures(rows: list[Any], conf: list[list[float]], q: torch.Tensor, p_base: torch.Tensor,
                         is_eot: torch.Tensor, eot: set[int], tok: Any) -> tuple[dict[str, Any], list[Finding]]:
    """P2-P4 of gift.preconditions from the teacher's q and the base's p on the labelled tokens."""
    shares = loss_shares(q, p_base, is_eot)
    ids = torch.tensor([y for r in rows for y in r.labels if y != IGNORE])  # the order q and p_base were read in
    sits = low_q_carriers(ids, q, p_base, is_eot)
    weighted = []
    for r, c in zip(rows, conf):
        labelled = [y != IGNORE for y in r.labels]
        qr = torch.tensor(c)
        weighted.append((r.input_ids, labelled, gift_weights(qr, torch.tensor([i in eot for i in r.input_ids]),
                                                             WeightParams(1.0, 1e-4, 0.6))))
    frequent = max(MIN_DECISIONS, len(rows) // 100)  # a context in 1% of rows or more
    found = [b for b in branch_inversions(weighted) if b["count"] >= frequent]
    inverted = [b for b in found if not b["separated"]]
    runaways = [b for b in inverted if is_runaway(b)]
    separated = len(found) - len(inverted)
    carriers = [{**c, "text": tok.decode([c["token"]])} for c in sits["carriers"]]
    figures = {**shares, "low_q_odds_ratio": sits["odds_ratio"], "low_q_carriers": carriers,
               "inversions": inverted[:10], "inverted_contexts": len(inverted), "runaway_contexts": len(runaways),
               "separated_contexts": separated}
    findings = [Finding("INFO", "preconditions", f"step-0 loss on q < 0.5 tokens: {shares['uniform_low']:.1%} "
                        f"uniform (Shadow-FT), {shares['gift_low']:.1%} GIFT at γ 1 (the paper: 79.7% / 29.6%); on "
                        f"tokens instruct is sure of and base is not (q ≥ 0.9, p_base < 0.1; "
                        f"{shares['relearn_tokens']:.1%} of tokens): {shares['uniform_relearn']:.1%} uniform, "
                        f"{shares['gift_relearn']:.1%} GIFT")]
    if carriers and sits["odds_ratio"] is not None:
        findings.append(Finding("INFO", "preconditions", "GIFT's q < 0.5 loss sits most on " + ", ".join(
            f"{c['text']!r} {c['gift']:.1%} (uniform {c['uniform']:.1%}, mean q {c['mean_q']:.2f})" for c in carriers)
            + f"; its odds are the uniform odds × {sits['odds_ratio']:.2f} (the paper's 79.7% / 29.6%: × 0.11), a "
              f"ratio that falls only where the base's loss sits on tokens the teacher gives q nearer 0 or 1"))
    if shares["gift_relearn"] > 0.5:
        findings.append(Finding("WARNING", "preconditions", f"{shares['gift_relearn']:.0%} of GIFT's first-step loss "
                                f"re-learns tokens the instruct model is sure of and the base is not (chat markers the "
                                f"base never read): GIFT's signal there is instruction tuning again, not the task"))
    if inverted:
        b = (runaways or inverted)[0]  # the kind that ran this project's models on, where there is one
        show = tok.decode(b["context"])
        findings.append(Finding("WARNING", "preconditions", f"GIFT's weights reverse the data's choice in "
                                f"{len(inverted)} frequent context(s), {len(runaways)} of them runaways (a majority "
                                f"≥ {RUNAWAY_MAJORITY:.0%} of the context kept under {RUNAWAY_WEIGHT:.0%} of the "
                                f"weight); the most frequent "
                                f"{'runaway' if runaways else 'one'}, after {show!r} "
                                f"({b['count']} times): the data continues {tok.decode([b['majority']])!r} "
                                f"{b['majority_share']:.0%} of the time, which gets {b['majority_weight_share']:.1%} of "
                                f"the weight, and GIFT favours {tok.decode([b['weighted']])!r} "
                                f"({b['weighted_share']:.0%}): the merged model may take the minority branch (this "
                                f"project's models ran on past the answer so)"))
    if separated:
        findings.append(Finding("INFO", "preconditions", f"{separated} more reversal(s) in 1-2 tokens of context are "
                                f"not counted: three tokens of context take their two continuations apart (positions a "
                                f"model tells apart, pooled by the shorter context)"))
    return figures, findings


def adapter_deltas(adapter: str, trust_pickle: bool, instruct: dict[str, Weight], base: dict[str, Weight]
                   ) -> dict[str, Any]:
    """The adapter's deltas by weight name, refused in one line where it adapts a tensor the pair does not hold."""
    from .merge import read_adapter

    deltas, _ = read_adapter(Path(adapter), trust_pickle)
    missing = sorted(n for n in deltas if n not in instruct or n not in base)
    if missing:
        raise GiftError(f"--adapter {adapter}: it adapts {missing[0]}, which the pair does not hold")
    return deltas


def adapter_size(adapter: str, deltas: dict[str, Any], instruct: dict[str, Weight], tuning: float
                 ) -> tuple[dict[str, Any], list[Finding]]:
    """P5: ‖ΔW‖ / ‖W_I − W_B‖ over the tensors a plain adapter adapts (`tuning`: weight_distance's ‖W_I − W_B‖ over
    them, streamed with the rest)."""
    delta = sum(float(d.value(instruct[name].shape, name).double().pow(2).sum()) for name, d in deltas.items()) ** 0.5
    ratio = delta / tuning if tuning else float("inf")
    figures = {"adapter": adapter, "delta_over_tuning": ratio, "tensors": len(deltas)}
    findings = [Finding("INFO", "preconditions", f"‖ΔW‖ / ‖W_I − W_B‖ of the adapter over its {len(deltas)} tensors: "
                                                 f"{ratio:.3f}")]
    if ratio > ADAPTER_LARGE:
        findings.append(Finding("WARNING", "preconditions", f"the adapter is {ratio:.2f} of instruction tuning's size "
                                f"(> {ADAPTER_LARGE}): added to instruct at λ 1 it rewrites more than it adds; a real "
                                f"LoRA adapter is a small fraction; lower the learning rate or the steps"))
    return figures, findings


def shapes_and_tokenizers(cfg: CheckConfig) -> tuple[dict[str, Any], list[Finding], Any, Any]:
    base_cfg, inst_cfg = load_config(cfg.base), load_config(cfg.instruct)
    a, b = model_shape(base_cfg), model_shape(inst_cfg)
    findings = [Finding("ERROR", "shape", f"{k} differs: base has {a.get(k)}, instruct has {b.get(k)}")
                for k in ("model_type", *SHAPE_KEYS) if a.get(k) != b.get(k)]
    ta, tb = base_cfg.get_text_config(), inst_cfg.get_text_config()
    findings += [Finding("WARNING", "shape", f"{k} differs: base has {getattr(ta, k, None)}, instruct has "
                                             f"{getattr(tb, k, None)}; positions would be encoded differently")
                 for k in ROPE_KEYS if getattr(ta, k, None) != getattr(tb, k, None)]
    base_tok, inst_tok = load_tokenizer(cfg.base), load_tokenizer(cfg.instruct)
    fa, fb = vocab_fingerprint(base_tok), vocab_fingerprint(inst_tok)
    if fa != fb:
        findings.append(Finding("ERROR", "tokenizer", f"the tokenizers map ids to other text (fingerprints {fa} vs {fb}): "
                                                      f"an annotation or adapter of one is meaningless for the other"))
    roles = special_token_notes(special_tokens(base_tok), special_tokens(inst_tok), "base", "instruct")
    findings.append(Finding("INFO", "tokenizer", "special roles: " + ("; ".join(roles) if roles else "the same")
                            + " (differences are expected between twins)"))
    opts = template_options(cfg.system_prompt, cfg.suffix, cfg.chat_template)
    if not (opts.chat_template or getattr(inst_tok, "chat_template", None)):
        findings.append(Finding("ERROR", "tokenizer", "the instruct tokenizer has no chat template; pass --chat-template"))
        eot = None
    else:
        eot = sorted(end_of_turn_ids(inst_tok, opts))
        findings.append(Finding("INFO", "tokenizer", f"instruct closes an assistant turn with "
                                                     f"{', '.join(inst_tok.convert_ids_to_tokens(eot))} (labelled in "
                                                     f"training); base {'has a' if base_tok.chat_template else 'has no'} "
                                                     f"chat template of its own"))
    rows = getattr(ta, "vocab_size", None)
    if rows and rows != len(base_tok):
        findings.append(Finding("INFO", "shape", f"{rows} embedding rows for a tokenizer of {len(base_tok)} tokens"))
    info = {"base": a, "instruct": b, "fingerprints": {"base": fa, "instruct": fb},
            "special_tokens": {"base": special_tokens(base_tok), "instruct": special_tokens(inst_tok)},
            "end_of_turn_ids": eot}
    return info, findings, base_tok, inst_tok


def check_pair(cfg: CheckConfig, quiet: bool = False) -> dict[str, Any]:
    """Every finding and figure; ERRORs raise (one line each) before anything is written; `quiet` prints nothing."""
    t0 = time.time()
    if cfg.out:
        check_out_dir(cfg.out, cfg.overwrite)
    info, findings, base_tok, inst_tok = shapes_and_tokenizers(cfg)
    result: dict[str, Any] = {"base": cfg.base, "instruct": cfg.instruct, "data": cfg.data, "pair": info}
    errors = [f for f in findings if f.level == "ERROR"]
    if not errors:
        opts = template_options(cfg.system_prompt, cfg.suffix, cfg.chat_template)
        data_ids: set[int] = set()
        if cfg.data:
            result["data_figures"], found, data_ids = data_figures(cfg, inst_tok, opts)
            findings += found
        # each read once: GGUF and pickled weights are loaded whole
        base, instruct = tensors(cfg.base, cfg.trust_pickle), tensors(cfg.instruct, cfg.trust_pickle)
        deltas = adapter_deltas(cfg.adapter, cfg.trust_pickle, instruct, base) if cfg.adapter else {}
        result["rows"], found = untrained_rows(base, base_tok, inst_tok, opts, data_ids)
        findings += found
        result["distance"], found = weight_distance(base, instruct, set(deltas))
        findings += found
        if deltas:
            result["adapter"], found = adapter_size(cfg.adapter, deltas, instruct,
                                                    result["distance"]["adapted"]["difference"])
            findings += found
        errors = [f for f in findings if f.level == "ERROR"]
    if errors:
        raise GiftError("\n".join(f"{f.topic}: {f.message}" for f in errors))
    result["findings"] = [f.__dict__ for f in findings]
    result["seconds"] = round(time.time() - t0, 2)
    result["config"] = to_dict(cfg)
    if cfg.out:
        write_check(Path(cfg.out), result, cfg.overwrite)
    if not quiet:
        print(summary(result))
    return result


def summary(result: dict[str, Any]) -> str:
    """One screen: each finding on a line, warnings first."""
    order = {"ERROR": 0, "WARNING": 1, "INFO": 2}
    lines = [f"check-pair: base {result['base']}, instruct {result['instruct']}"
             + (f", data {result['data']}" if result["data"] else "")]
    lines += [f"  {f['level']:<7} {f['topic']:<9} {f['message']}"
              for f in sorted(result["findings"], key=lambda f: order[f["level"]])]
    warnings = sum(f["level"] == "WARNING" for f in result["findings"])
    lines.append(f"{warnings} warning(s)." if warnings else "No warnings: nothing seen that would stop transfer.")
    return "\n".join(lines)


def write_check(out: Path, result: dict[str, Any], overwrite: bool) -> None:
    from .plots import distance_plot

    with atomic_dir(out, overwrite) as tmp:
        (tmp / "check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (tmp / "check.md").write_text(markdown(result))
        if result.get("distance", {}).get("layers"):
            distance_plot(result["distance"]["layers"], tmp / "distance.png")


def markdown(result: dict[str, Any]) -> str:
    lines = ["# gift check-pair", "", f"Base `{result['base']}`, instruct `{result['instruct']}`"
             + (f", data `{result['data']}`" if result["data"] else "") + ".", "", "| level | topic | finding |",
             "|---|---|---|"]
    lines += [f"| {f['level']} | {f['topic']} | {f['message']} |" for f in result["findings"]]
    layers = result.get("distance", {}).get("layers")
    if layers:
        lines += ["", "| layer | ‖W_I − W_B‖/‖W_B‖ | σ |", "|---|---|---|"]
        lines += [f"| {k} | {v['relative']:.4f} | {v['sigma']:.4f} |" for k, v in layers.items()]
        lines += ["", "![distance per layer](distance.png)"]
    return "\n".join(lines) + "\n"
