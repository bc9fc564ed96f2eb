"""The bundled pair's build: pretrain base, instruction-tune instruct gently, write the task splits, then
measure the properties a real pair has (the gates) and write them into manifest.json and PROVENANCE.md.

Used by scripts/build_tiny_pair.py, the only way src/gift/assets/tiny is produced. The gates are
measured with gift's own commands (train, merge, evaluate), so what they report is what a user gets.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import torch
import yaml

from ..atomic import atomic_dir
from ..config import DEMOS
from ..data import TemplateOptions, encode, end_of_turn_ids, pad_batch, to_example
from ..loss import GoldLogprobs
from . import build_tokenizer, model_config, random_model, save_tokenizer, world

# gate -> (figure in the manifest's "gates", test, target as written in PROVENANCE.md)
GATES = {
    "closeness": (lambda g: g["weight_delta"]["all"] <= 0.05, "‖W_I − W_B‖_F / ‖W_B‖_F ≤ 0.05"),
    "post-training budget": (lambda g: g["instruct_token_share"] <= 0.05, "instruction tokens ≤ 5% of pretraining"),
    "instruction following": (lambda g: g["instruct"]["retention"] >= 0.60 and g["base"]["retention"] <= 0.20,
                              "instruct ≥ 60% and base ≤ 20% on retention"),
    "knowledge": (lambda g: g["instruct"]["knowledge"] >= 0.50, "instruct ≥ 50% on knowledge (option log-likelihood)"),
    "task headroom": (lambda g: 0.15 <= g["instruct"]["math"] <= 0.50 and g["instruct-sft"]["math"] >= 0.80,
                      "instruct 15-50% on math, Instruct-SFT ≥ 80%"),
    "transfer works": (lambda g: mean(g["shadow-ft"]["math_by_seed"]) - g["instruct"]["math"] >= 0.20,
                       "Shadow-FT merged into instruct ≥ instruct + 20 points on math (mean over adapter seeds)"),
}


@dataclass
class TinyConfig:
    """Everything the bundled pair is built from; written to its manifest."""

    seed: int = 0
    people: int = 24
    vocab_size: int = 640
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 384
    block: int = 64  # pretraining sequence length
    pretrain_steps: int = 6000
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3
    two_step_share: float = 0.02  # share of pretraining documents that are two-step problems (task headroom)
    chat_log_share: float = 0.02  # share of pretraining documents that are chat logs of questions about the people
    chat_log_mix: dict[str, float] | None = None  # kinds of question in the chat logs (None: facts only)
    sheep_share: float = 0.0  # share of pretraining documents stating flocks (> 0: a world with the numeric fact)
    sheep_truth: float = 1.0  # share of the flocks pretraining states (statements, chat logs) that are right
    sheep_rumour: float = 0.0  # share that repeat the person's rumour, one wrong count (> 0: a world with rumours)
    goats: bool = False  # each person a herd of goats too, stated (and drawn) as the flocks are
    prose_mix: dict[str, float] | None = None  # extra kinds of plain-text documents, weights beside the corpus's 1
    instruct_steps: int = 240  # chat steps; each is followed by a plain-text replay step of replay_batch blocks
    instruct_batch: int = 32
    instruct_lr: float = 1.8e-4
    # weight per kind of chat in instruction tuning
    instruct_mix: dict[str, float] = field(default_factory=lambda: {**world.INSTRUCT_MIX, "two_step_plain": 0.15})
    replay_batch: int = 16  # 0 = no replay; replay keeps instruct's handling of plain text close to base's
    init_chat_tokens: bool = True  # fresh rows for the chat template's tokens pretraining never saw
    splits: dict[str, dict[str, int]] = field(default_factory=lambda: {
        "math": {"train": 2000, "dev": 200, "test": 300},
        "knowledge": {"train": 1000, "dev": 200, "test": 300},
        "retention": {"dev": 120, "test": 300}})
    gates: bool = True  # measure the gates (trains Shadow-FT and Instruct-SFT adapters with the demo recipe)
    transfer_seeds: int = 3  # Shadow-FT adapters (seeds 0, 1, …) the transfer gate averages: one can pass by luck

    def pretraining_key(self, tokenizer: Any) -> str:
        """A digest of everything that decides the pretrained base and the random stream after it: the
        pretraining fields, the tokenizer, torch's version and the code pretraining runs (the world, the tiny
        models, the tokenizer's sample, the batching and the training loop): a change to any starts a new base,
        so that a cached build never differs from a full one. The code is read as its syntax tree, so that an edit
        to a comment or to the layout keeps the key."""
        import ast
        import inspect
        import sys

        fields = ("seed", "people", "vocab_size", "hidden", "layers", "heads", "intermediate", "block",
                  "pretrain_steps", "pretrain_batch", "pretrain_lr", "two_step_share", "chat_log_share", "chat_log_mix",
                  "sheep_share", "sheep_truth", "prose_mix", "sheep_rumour", "goats")
        code = [world, sys.modules[__package__], world_tokenizer, packed_blocks, fit]
        blob = "".join([json.dumps({f: getattr(self, f) for f in fields}, sort_keys=True), torch.__version__,
                        *(ast.unparse(ast.parse(inspect.getsource(c))) for c in code),
                        tokenizer.backend_tokenizer.to_str()])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(model: Any, batches: Iterator[dict[str, torch.Tensor]], steps: int, lr: float, desc: str) -> tuple[list[float], int]:
    """Full-parameter training with mean token NLL, AdamW and warm-up + cosine decay;
    returns the losses and the number of tokens seen (padding excluded)."""
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    scorer = GoldLogprobs(model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    losses, tokens = [], 0
    for _ in (bar := tqdm(range(steps), desc=desc, unit="step", mininterval=5)):
        b = {k: v.to(device()) for k, v in next(batches).items()}
        tokens += int(b["attention_mask"].sum())
        loss = -scorer(b["input_ids"], b["attention_mask"], b["labels"]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return losses, tokens


def packed_blocks(tokenizer: Any, docs: Iterator[str], block: int, batch: int) -> Iterator[dict[str, torch.Tensor]]:
    """Plain-text pretraining batches: documents joined by <|endoftext|>, cut into full blocks."""
    buffer: list[int] = []
    while True:
        while len(buffer) < block * batch:
            buffer += tokenizer(next(docs), add_special_tokens=False)["input_ids"] + [tokenizer.bos_token_id]
        ids = torch.tensor(buffer[: block * batch]).view(batch, block)
        buffer = buffer[block * batch:]
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def chat_batches(tokenizer: Any, examples: Iterator[dict[str, str]], batch: int) -> Iterator[dict[str, torch.Tensor]]:
    """Instruction-tuning batches through the chat template, loss on the responses only."""
    opts = TemplateOptions()
    eot_ids = end_of_turn_ids(tokenizer, opts)  # once, not a probe render per row
    while True:
        rows = [encode(tokenizer, to_example(next(examples), "instruct", 0), opts, eot_ids) for _ in range(batch)]
        yield pad_batch(rows, tokenizer.pad_token_id)


def interleaved(chats: Iterator[dict[str, torch.Tensor]], replay: Iterator[dict[str, torch.Tensor]] | None):
    """Chat batches, each followed by a plain-text replay batch when `replay` is given."""
    while True:
        yield next(chats)
        if replay is not None:
            yield next(replay)


def marked(batches: Iterator[dict[str, torch.Tensor]], seen: torch.Tensor) -> Iterator[dict[str, torch.Tensor]]:
    """Pass `batches` through, marking in `seen` every token id they hold."""
    for b in batches:
        seen[b["input_ids"]] = True
        yield b


def init_chat_tokens(model: Any, tok: Any, unseen: list[int], seed: int) -> list[int]:
    """Draw new embedding (and output) rows for the chat template's tokens that pretraining never saw (the turn
    markers, the pieces of the role names) from a normal with the trained rows' mean and covariance.

    With a tied output head every softmax of pretraining pushes unseen rows away from the hidden states, to
    3.3 times the norm of trained rows (measured on a base without chat logs), so at each chat marker they
    swamp the residual stream, and a gentle instruction tuning cannot move them. Real recipes re-initialise
    such rows before post-training (transformers' `resize_token_embeddings(mean_resizing=True)` draws added rows
    from this normal, after Hewitt 2021; Unsloth resets Llama-3 base's untrained tokens); so does the build, and
    the base is shipped with them in place. Draws rather than the bare mean keep the markers distinct from each
    other. Other unseen tokens (bytes the world never writes) are left as they are. Returns the ids re-drawn
    (none where the pretraining corpus holds chat logs).
    """
    scaffold = tok.apply_chat_template([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
                                       tokenize=False, add_generation_prompt=True)
    ids = sorted(set(tok(scaffold, add_special_tokens=False)["input_ids"]) & set(unseen))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layers = (model.get_input_embeddings(), model.get_output_embeddings())
        for weight in {id(m.weight): m.weight for m in layers}.values():  # a tied head shares the embedding's
            trained = torch.ones(weight.shape[0], dtype=torch.bool)
            trained[unseen] = False
            rows = weight[trained].double().cpu()
            centre = rows.mean(0)
            cov = (rows - centre).T @ (rows - centre) / len(rows)
            chol = torch.linalg.cholesky(cov + 1e-8 * torch.eye(rows.shape[1], dtype=rows.dtype))
            draws = centre + torch.randn(len(ids), rows.shape[1], generator=gen, dtype=rows.dtype) @ chol.T
            weight[ids] = draws.to(weight)
    return ids


def forever(make):
    while True:
        yield make()


TASKS = {"math": world.math_example, "knowledge": world.knowledge_example}


def write_splits(cfg: TinyConfig, ps: list[world.Person], out: Path) -> dict[str, int]:
    """Task files, each split from its own seeded stream; duplicates across splits are removed from dev/test."""
    counts = {}
    (out / "data").mkdir(parents=True)
    for task, sizes in cfg.splits.items():
        seen: set[str] = set()
        for split, n in sizes.items():
            rng = random.Random(f"{cfg.seed}-{task}-{split}")
            rows: list[dict] = []
            while len(rows) < n:
                row = world.retention_example(rng) if task == "retention" else TASKS[task](rng, ps)
                if row["question"] not in seen:
                    seen.add(row["question"])
                    rows.append(row)
            (out / "data" / f"{task}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            counts[f"{task}_{split}"] = n
    return counts


def world_tokenizer(cfg: TinyConfig) -> tuple[Any, random.Random, list[world.Person]]:
    """The world's people and the tokenizer trained on a sample of all its text, from cfg.seed;
    returns the random stream positioned where the build continues from."""
    rng = random.Random(cfg.seed)
    ps = world.people(rng, cfg.people, sheep=cfg.sheep_share > 0, rumours=cfg.sheep_rumour > 0, goats=cfg.goats)
    sample = [world.pretraining_doc(rng, ps) for _ in range(3000)]
    sample += [" ".join(world.instruct_example(rng, ps).values()) for _ in range(1000)]
    sample += [" ".join(str(v) for v in TASKS[t](rng, ps).values()) for t in TASKS for _ in range(500)]
    if cfg.sheep_share:  # drawn last, so that worlds without flocks sample as before
        sample += [" ".join(world.instruct_example(rng, ps, {"sheep_question": 1, "sheep_problem": 1}).values())
                   for _ in range(500)]
    if cfg.goats:  # drawn after those, so that worlds without goats sample as before
        sample += [" ".join(world.instruct_example(rng, ps, {"goat_question": 1, "herd": 1}).values()) for _ in range(500)]
    return build_tokenizer(sample, cfg.vocab_size), rng, ps


# ---- the gates ----

def weight_delta(base: Any, instruct: Any) -> dict[str, float]:
    """‖W_I − W_B‖_F / ‖W_B‖_F over all weights and per family (embeddings, attention, MLP, norms)."""
    families = {"embeddings": ("embed_tokens", "lm_head"), "attention": ("self_attn",), "mlp": ("mlp",),
                "norms": ("norm",)}
    sums: dict[str, list[float]] = {k: [0.0, 0.0] for k in ["all", *families]}
    inst = dict(instruct.named_parameters())
    for name, w in base.named_parameters():
        d, n = (inst[name] - w).pow(2).sum().item(), w.pow(2).sum().item()
        fam = next(f for f, keys in families.items() if any(k in name for k in keys))
        for key in ("all", fam):
            sums[key][0] += d
            sums[key][1] += n
    return {k: round((d / n) ** 0.5, 4) for k, (d, n) in sums.items()}


def gate_benchmarks(pair: Path, demo: dict[str, Any]) -> list[Any]:
    """The run config's task and retention benchmarks (math, knowledge, retention), read from `pair`."""
    from ..benchmarks import load_benchmark

    out = []
    for spec in demo["benchmarks"]:
        if spec.get("role") in ("task", "retention"):
            b = load_benchmark(str(pair / "data" / Path(spec["file"]).name), None, None, spec.get("answer_field"),
                               spec["kind"], spec.get("instruction"), spec.get("instruction"))
            b.name = spec["name"]
            out.append(b)
    return out


def accuracies(model_dir: str | Path, benches: list[Any], work: Path, demo: dict[str, Any]) -> dict[str, float]:
    from ..config import EvalConfig
    from ..evaluate import evaluate

    settings = {k: v for k, v in demo["eval"].items() if k != "samples"}
    out = evaluate(EvalConfig(model=str(model_dir), bench=[b.name for b in benches], out=str(work), **settings), benches)
    results = json.loads((out / "results.json").read_text())["benchmarks"]
    acc = {name: round(r["metrics"]["accuracy"]["value"], 4) for name, r in results.items()}
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return {**acc, "retention_by_skill": by_skill([(r["reference"], r["greedy_correct"], r["prompt"]) for r in records
                                                   if r["benchmark"] == "retention"])}


def by_skill(rows: list[tuple[str, bool, str]]) -> dict[str, float]:
    """Accuracy per general skill from (reference, correct, text holding the question) rows."""
    from collections import defaultdict

    groups: dict[str, list[bool]] = defaultdict(list)
    for _, ok, text in rows:
        groups[world.skill_of(text.split("\n")[1])].append(ok)
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(groups.items())}


def plain_layout(model_dir: Path, pair: Path) -> dict[str, Any]:
    """Greedy accuracy of a model in the plain pretraining layout ("Question:\\n…\\nAnswer:\\n"), per general
    skill and on the math test: what pretraining taught, which instruction tuning is meant only to elicit."""
    from ..benchmarks import exact_equal
    from ..generate import generate_hf
    from ..grading import grade_answer
    from ..model import load_model, load_tokenizer

    tok, model = load_tokenizer(str(model_dir)), load_model(str(model_dir)).to(device())
    out: dict[str, Any] = {}
    for task in ("retention", "math"):
        rows = [json.loads(line) for line in (pair / "data" / f"{task}_test.jsonl").read_text().splitlines()]
        prompts = [world.plain({"prompt": r["question"], "completion": ""}) for r in rows]
        answers = [o[0].split("\n")[0] for o in generate_hf(model, tok, prompts, 1, 0.0, 1.0, 48, 100, 0, task)[0]]
        if task == "math":
            out["math"] = round(sum(grade_answer(a, r["reference"]) for a, r in zip(answers, rows)) / len(rows), 4)
        else:
            out["retention_by_skill"] = by_skill([(r["reference"], exact_equal(a, r["reference"]), "x\n" + r["question"])
                                                  for r, a in zip(rows, answers)])
    return out


def measure_gates(pair: Path, delta: dict[str, float], token_share: float, transfer_seeds: int) -> dict[str, Any]:
    """Every gate's figure: accuracies of base, instruct, Instruct-SFT (seed 0) and Shadow-FT (seed 0, and its
    math for `transfer_seeds` adapter seeds), trained with the demo's recipe; the weight delta and the
    post-training budget."""
    from ..config import MergeConfig, TrainConfig
    from ..merge import merge
    from ..train import train

    demo = yaml.safe_load(DEMOS["math"].read_text())
    benches = gate_benchmarks(pair, demo)
    g: dict[str, Any] = {"weight_delta": delta, "instruct_token_share": round(token_share, 4)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("base", "instruct"):
            g[name] = accuracies(pair / name, benches, work / f"eval-{name}", demo)
        g["base"]["plain_layout"] = plain_layout(pair / "base", pair)
        for name, trained, seed in [("instruct-sft", "instruct", 0)] + [
                (f"shadow-ft-{seed}", "base", seed) for seed in range(transfer_seeds)]:
            train(TrainConfig(model=str(pair / trained), data=str(pair / "data" / "math_train.jsonl"),
                              out=str(work / name), method="sft", seed=seed, **demo["train"]))
            merge(MergeConfig(instruct=str(pair / "instruct"), adapter=str(work / name), out=str(work / f"{name}-merged")))
            tested = benches if seed == 0 else [b for b in benches if b.name == "math"]  # later seeds: the gate's math
            g[name] = accuracies(work / f"{name}-merged", tested, work / f"eval-{name}", demo)
            shutil.rmtree(work / name)
            shutil.rmtree(work / f"{name}-merged")
    adapters = [g.pop(f"shadow-ft-{seed}") for seed in range(transfer_seeds)]
    g["shadow-ft"] = {**adapters[0], "math_by_seed": [a["math"] for a in adapters]}
    g["passed"] = {gate: bool(test(g)) for gate, (test, _) in GATES.items()}
    return g


def provenance(manifest: dict[str, Any]) -> str:
    """PROVENANCE.md: how the pair was made and each gate's figure."""
    c, g = manifest["config"], manifest.get("gates")
    defaults = dataclasses.asdict(TinyConfig())
    sets = "".join(f" --set '{k}={json.dumps(v)}'" for k, v in c.items() if k != "seed" and v != defaults.get(k))
    lines = ["# The bundled tiny pair", "",
             f"Built by `python scripts/build_tiny_pair.py --seed {c['seed']}{sets}` in "
             f"{manifest['build_seconds'] / 60:.0f} minutes on {manifest['device']}, torch {manifest['torch']}" + (
                 " (the pretrained base reused from the build's cache, which gives the same files as pretraining "
                 "again)." if manifest["pretraining"]["reused_from_cache"] else
                 f", {manifest['pretraining']['seconds'] / 60:.0f} of them pretraining."), "",
             f"- base: a {manifest['parameters'] / 1e6:.2f}M-parameter Llama (hidden {c['hidden']}, {c['layers']} layers, "
             f"vocabulary {manifest['vocab_size']}) pretrained from scratch for {c['pretrain_steps']} steps of "
             f"{c['pretrain_batch']}×{c['block']} tokens on plain text (`gift.tiny.world`: facts, questions in a "
             f"`Question:` / `Answer:` layout, general skills, arithmetic, {c['two_step_share']:.0%} two-step problems). "
             + (f"{c['chat_log_share']:.0%} of its documents are chat logs of "
                + (", ".join(f"{k} {w:g}" for k, w in c["chat_log_mix"].items()) if c.get("chat_log_mix")
                   else "questions about the people")
                + " (the chat template's markers, never a general skill in it)." if c["chat_log_share"] else
                "It never sees the chat template.")
             + (" The chat template's tokens it never saw (" + ", ".join(manifest["pretraining"]["chat_tokens_redrawn"])
                + ") got fresh embedding rows before instruction tuning (`init_chat_tokens`)."
                if manifest["pretraining"]["chat_tokens_redrawn"] else ""),
             f"- instruct: base after {c['instruct_steps']} steps of full-parameter instruction tuning (batch "
             f"{c['instruct_batch']}, lr {c['instruct_lr']:g}) on chats of the same kinds of question "
             f"({', '.join(f'{k} {w:g}' for k, w in c['instruct_mix'].items())}), in a short answer style, "
             + (f"each step followed by a replay step of {c['replay_batch']}×{c['block']} pretraining tokens "
                if c["replay_batch"] else "")
             + f"({manifest['tokens']['instruct']:,} post-training tokens against {manifest['tokens']['pretrain']:,}).",
             "- data: `math` (two-step word problems; worked solutions in a style of their own, ending 'So the final "
             "answer is N.'), "
             "`knowledge` (4-way multiple choice on the people's facts), `retention` (held-out general-skill probes).",
             ""]
    if g:
        lines += ["## Gates (measured by the build)", "", "| gate | target | measured | met |", "|---|---|---|---|"]
        figures = {
            "closeness": f"{g['weight_delta']['all']:.3f} (" + ", ".join(
                f"{k} {v:.3f}" for k, v in g["weight_delta"].items() if k != "all") + ")",
            "post-training budget": f"{g['instruct_token_share']:.1%}",
            "instruction following": f"instruct {g['instruct']['retention']:.1%}, base {g['base']['retention']:.1%}",
            "knowledge": f"instruct {g['instruct']['knowledge']:.1%} (chance 25%)",
            "task headroom": f"instruct {g['instruct']['math']:.1%}, Instruct-SFT {g['instruct-sft']['math']:.1%}",
            "transfer works": "Shadow-FT " + ", ".join(f"{m:.1%}" for m in g["shadow-ft"]["math_by_seed"])
                              + f" by seed vs instruct {g['instruct']['math']:.1%}",
        }
        for gate, (_, target) in GATES.items():
            lines.append(f"| {gate} | {target} | {figures[gate]} | {'yes' if g['passed'][gate] else '**no**'} |")
        lines += ["", "Accuracies are greedy on the 300-problem test splits (knowledge by option log-likelihood, as "
                  "lm-evaluation-harness scores MMLU); Instruct-SFT (seed 0) and Shadow-FT (seed 0, and the seeds the "
                  "transfer gate averages) are trained with the demo's recipe (`src/gift/assets/demo.yaml`)."]
    return "\n".join(lines) + "\n"


def pretrain(cfg: TinyConfig, model: Any, tok: Any, docs: Iterator[str], rng: random.Random,
             cache: Path | None) -> dict[str, Any]:
    """Pretrain `model` in place on `docs` (drawn from `rng`); returns the tokens seen, the mean loss of the last
    50 steps, the seconds pretraining took and whether it came from `cache`.

    With `cache`, a base pretrained before under the same `pretraining_key` is loaded instead, together with
    the random stream's state after it, so that the rest of the build is exactly what a full build gives:
    trying instruction-tuning variants then costs minutes, not the pretraining's quarter of an hour.
    """
    from safetensors.torch import load_model, save_model

    slot = cache / cfg.pretraining_key(tok) if cache else None
    if slot and (slot / "state.json").is_file():
        state = json.loads((slot / "state.json").read_text())
        load_model(model, slot / "model.safetensors", device=str(device()))
        version, internal, gauss = state.pop("rng")
        rng.setstate((version, tuple(internal), gauss))
        return {**state, "cached": str(slot)}
    t0 = time.time()
    seen = torch.zeros(len(tok), dtype=torch.bool)
    losses, tokens = fit(model, marked(packed_blocks(tok, docs, cfg.block, cfg.pretrain_batch), seen),
                         cfg.pretrain_steps, cfg.pretrain_lr, "pretrain base")
    info = {"tokens": tokens, "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "seconds": round(time.time() - t0, 1), "unseen": (~seen).nonzero().flatten().tolist()}
    if slot:
        with atomic_dir(slot, overwrite=True) as tmp:
            save_model(model, tmp / "model.safetensors")
            (tmp / "state.json").write_text(json.dumps({"rng": rng.getstate(), **info}))
    return {**info, "cached": None}


def build(cfg: TinyConfig, out: Path, overwrite: bool = True, cache: Path | None = None) -> dict[str, Any]:
    """Pretrain base, instruction-tune instruct, write both with the task splits, the gates and a manifest.
    `cache`: a folder where pretrained bases are kept and reused (see `pretrain`)."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    tok, rng, ps = world_tokenizer(cfg)
    config = model_config("llama", len(tok), hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads,
                          kv_heads=cfg.heads, intermediate=cfg.intermediate, tied=True, max_positions=256)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    model = random_model(config, cfg.seed).to(device())
    docs = forever(lambda: world.pretraining_doc(rng, ps, cfg.two_step_share, cfg.chat_log_share, cfg.chat_log_mix,
                                                 cfg.sheep_share, cfg.sheep_truth, cfg.prose_mix,
                                                 cfg.sheep_rumour))
    pre = pretrain(cfg, model, tok, docs, rng, cache)
    redrawn = init_chat_tokens(model, tok, pre["unseen"], cfg.seed) if cfg.init_chat_tokens else []
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with atomic_dir(out, overwrite) as tmp:
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(tmp / "base")
        save_tokenizer(tok, tmp / "base")
        chats = chat_batches(tok, forever(lambda: world.instruct_example(rng, ps, cfg.instruct_mix)),
                             cfg.instruct_batch)
        replay = packed_blocks(tok, docs, cfg.block, cfg.replay_batch) if cfg.replay_batch else None
        steps = cfg.instruct_steps * (2 if replay else 1)
        ins, ins_tokens = fit(model, interleaved(chats, replay), steps, cfg.instruct_lr, "instruction-tune")
        model.save_pretrained(tmp / "instruct")
        save_tokenizer(tok, tmp / "instruct")
        counts = write_splits(cfg, ps, tmp)
        # a flock only in worlds that have one, so that the others' world.json reads as before
        (tmp / "world.json").write_text(json.dumps([{k: v for k, v in dataclasses.asdict(p).items() if v is not None}
                                                    for p in ps], indent=1) + "\n")
        base_model = random_model(config, cfg.seed)
        base_model.load_state_dict({k: v.cpu() for k, v in base.items()})
        delta = weight_delta(base_model, model.cpu())
        manifest: dict[str, Any] = {
            "seed": cfg.seed, "config": dataclasses.asdict(cfg), "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tok), "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else
            f"CPU ({torch.get_num_threads()} threads)",
            "tokens": {"pretrain": pre["tokens"], "instruct": ins_tokens},
            "final_loss": {"pretrain": pre["final_loss"], "instruct": sum(ins[-50:]) / len(ins[-50:])},
            "rows": counts}
        if cfg.gates:
            manifest["gates"] = measure_gates(tmp, delta, ins_tokens / pre["tokens"], cfg.transfer_seeds)
        manifest["build_seconds"] = round(time.time() - t0, 1)
        manifest["pretraining"] = {"seconds": pre["seconds"], "reused_from_cache": pre["cached"] is not None,
                                   "chat_tokens_redrawn": [tok.convert_ids_to_tokens(i) for i in redrawn]}
        (tmp / "PROVENANCE.md").write_text(provenance(manifest))
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest["sha256"] = {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
