"""Training on real lengths: one optimiser step over a fixed draw of NuminaMath-CoT rows, each setting in a fresh
process (its peak resident memory from wait4), the settings interleaved and repeated.

    python bench/lengths.py [--rows 16] [--repeats 2] [--models smollm2 qwen05] [--quick]

Sides: gift train as it was (random micro-batches, padded, no checkpointing, float32), each change alone, gift
train's defaults (padding-free where the probe allows, else grouped; checkpointing) in float32 and bfloat16, and
TRL's SFTTrainer + PEFT with its defaults and with padding_free (TRL's bfd packing is padding-free too). Throughput
counts real tokens only. Runs of a side with the same settings from earlier calls are kept and pooled.
Also the padded/real token ratio of whole epochs of the 2k rows at the published global batch, from lengths alone.
Writes bench/results/lengths.json; run.py's summary tabulates it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, qwen05_config, smollm2, write  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "numina_cot_2k.jsonl"
BEFORE = {"group_by_length": False, "padding_free": "off", "gradient_checkpointing": False, "dtype": "float32"}
DEFAULTS = {"group_by_length": True, "padding_free": "auto", "gradient_checkpointing": True}
GIFT_SIDES = {
    "gift before": BEFORE,
    "+ grouped by length": {**BEFORE, "group_by_length": True},
    "+ padding-free": {**BEFORE, "padding_free": "on"},
    "+ checkpointing": {**BEFORE, "gradient_checkpointing": True},
    "padding-free + checkpointing, float32": {**DEFAULTS, "padding_free": "on", "dtype": "float32"},
    "padding-free + checkpointing, bfloat16": {**DEFAULTS, "padding_free": "on", "dtype": "bfloat16"},
    "padding-free, no checkpointing, bfloat16": {**DEFAULTS, "padding_free": "on", "gradient_checkpointing": False,
                                                 "dtype": "bfloat16"},
    "grouped, padded + checkpointing, float32": {**DEFAULTS, "padding_free": "off", "dtype": "float32"},
    "grouped, padded + checkpointing, bfloat16": {**DEFAULTS, "padding_free": "off", "dtype": "bfloat16"},
    "gift defaults (auto layout, checkpointing), float32": {**DEFAULTS, "dtype": "float32"},
    "gift defaults (auto layout, checkpointing), bfloat16": {**DEFAULTS, "dtype": "bfloat16"},
}
TRL_SIDES = {
    "TRL defaults (float32)": {"padding_free": False, "gradient_checkpointing": True, "bf16": False},
    "TRL padding_free (float32)": {"padding_free": True, "gradient_checkpointing": True, "bf16": False},
    "TRL padding_free, no checkpointing (float32)": {"padding_free": True, "gradient_checkpointing": False,
                                                     "bf16": False},
    "TRL padding_free, bf16 autocast": {"padding_free": True, "gradient_checkpointing": True, "bf16": True},
    "TRL padding_free, no checkpointing, bf16 autocast": {"padding_free": True, "gradient_checkpointing": False,
                                                          "bf16": True},
}
LORA = {"rank": 64, "alpha": 128.0, "lora_dropout": 0.05}
MICRO = 4
COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                        cwd=Path(__file__).parent).stdout.strip()


def padding_ratio(lengths: list[int], global_batch: int, micro: int, grouped: bool, seed: int = 0) -> float:
    """Padded slots / real tokens over one epoch in random order, micro-batches padded to their longest row."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    slots = 0
    for s in range(0, len(order), global_batch):
        step = order[s:s + global_batch]
        if grouped:
            step.sort(key=lambda i: -lengths[i])
        slots += sum(max(lengths[i] for i in step[j:j + micro]) * len(step[j:j + micro])
                     for j in range(0, len(step), micro))
    return slots / sum(lengths)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One optimiser step in this process; prints its seconds and token counts as JSON."""
    if spec["side"] == "gift":
        from gift.config import TrainConfig
        from gift.train import train

        out = Path(spec["tmp"]) / f"gift-{os.getpid()}"
        train(TrainConfig(model=spec["model"], data=spec["ann"], out=str(out), max_steps=1, batch_size=MICRO,
                          grad_accum=spec["rows"] // MICRO, seed=0, **LORA, **spec["settings"]))
        log = json.loads((out / "log.jsonl").read_text().splitlines()[0])
        meta = json.loads((out / "gift_train.json").read_text())
        return {"seconds": log["step_seconds"], "padding_free": meta["padding_free"]}
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from gift import load_annotations
    from gift.model import load_model, load_tokenizer

    tok = load_tokenizer(spec["model"])
    data = load_annotations(spec["ann"], tok).remove_columns(["confidence"])
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

    s = spec["settings"]
    args = SFTConfig(output_dir=str(Path(spec["tmp"]) / f"trl-{os.getpid()}"), per_device_train_batch_size=MICRO,
                     gradient_accumulation_steps=spec["rows"] // MICRO, max_steps=1, use_cpu=not torch.cuda.is_available(),
                     report_to="none", save_strategy="no", bf16=s["bf16"], padding_free=s["padding_free"],
                     gradient_checkpointing=s["gradient_checkpointing"], max_length=None,
                     dataset_kwargs={"skip_prepare_dataset": True}, seed=0, learning_rate=2e-4)
    lora = LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["lora_dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=load_model(spec["model"], "float32"), args=args, train_dataset=data,
                         processing_class=tok, peft_config=lora, callbacks=[Clock()])
    trainer.train()
    return {"seconds": times[1] - times[0], "padding_free": s["padding_free"]}


def run_side(spec: dict[str, Any]) -> dict[str, Any]:
    """spec in a fresh process: its JSON answer plus peak RSS (MB) from the kernel's accounting of that child."""
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.WIFSIGNALED(status):  # the kernel's OOM killer sends SIGKILL, leaving no traceback
        return {"error": f"killed by signal {os.WTERMSIG(status)} (SIGKILL: out of memory)"
                if os.WTERMSIG(status) == 9 else f"killed by signal {os.WTERMSIG(status)}",
                "peak_rss_mb": usage.ru_maxrss / 1024}
    if status != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"exit status {status}"}
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_mb": usage.ru_maxrss / 1024}


def prepare(model: str, rows: int, tmp: Path, quick: bool) -> tuple[str, dict[str, Any]]:
    """The fixed draw of rows as a gift annotation (the model scoring itself), and its token counts."""
    from gift.annotate import annotate, read_annotations
    from gift.config import AnnotateConfig
    from gift.data import load_examples

    examples = load_examples(DATA)
    picked = random.Random(0).sample(range(len(examples)), rows)
    lines = DATA.read_text().splitlines()
    src = tmp / f"rows-{Path(model).stem}.jsonl"
    src.write_text("".join(lines[i] + "\n" for i in picked))
    ann = annotate(AnnotateConfig(teacher=model, data=str(src), out=str(tmp / f"ann-{Path(model).stem}"),
                                  max_length=256 if quick else 4096, truncate=quick))
    lengths = [len(r.input_ids) for r in read_annotations(ann)[0]]
    drawn = [max(lengths[j:j + MICRO]) * len(lengths[j:j + MICRO]) for j in range(0, rows, MICRO)]
    by_length = sorted(lengths, reverse=True)
    grouped = [max(by_length[j:j + MICRO]) * len(by_length[j:j + MICRO]) for j in range(0, rows, MICRO)]
    return str(ann), {"real_tokens": sum(lengths), "padded_slots_drawn_order": sum(drawn),
                      "padded_slots_grouped": sum(grouped), "lengths": lengths}


def model_paths(names: list[str], tmp: Path, quick: bool) -> dict[str, str]:
    """smollm2: SmolLM2-135M-Instruct (GGUF); qwen05: random weights of Qwen2.5-0.5B's shape (24 layers, 152,064
    tied rows) with the real Qwen2.5-Instruct tokenizer and ChatML template from ../shared/data/vocab."""
    from transformers import AutoTokenizer

    from gift.tiny import model_config, random_model
    from gift.tiny.layouts import FAMILIES, family_tokenizer

    out = {}
    if "smollm2" in names and smollm2():
        out["SmolLM2-135M-Instruct (GGUF)"] = smollm2()
    vocab = DATA.parent / "vocab"
    if "qwen05" in names and vocab.is_dir():
        family = FAMILIES["qwen2.5"]
        path = tmp / "qwen05"
        cfg = model_config("qwen2", family.vocab_size, tied=True) if quick else qwen05_config(24)
        cfg.vocab_size = family.vocab_size
        random_model(cfg, 0).save_pretrained(path)
        tok = family_tokenizer(family.instruct, AutoTokenizer.from_pretrained(vocab, gguf_file=family.gguf))
        tok.save_pretrained(path)
        out[f"Qwen2.5-0.5B shape{' (tiny stand-in)' if quick else ''}, random weights, Qwen2.5 tokenizer"] = str(path)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16, help="rows in the step (a multiple of 4)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["smollm2", "qwen05"], choices=["smollm2", "qwen05"])
    ap.add_argument("--sides", nargs="+", default=None, help="names of sides to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="short rows, a tiny random stand-in for Qwen")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        answer = worker(json.loads(args.worker))
        import torch
        if torch.cuda.is_available():  # on a GPU the device's peak is the figure that matters, beside host RSS
            answer["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(answer))
        return {}
    from gift.data import encode_all, load_examples, template_options
    from gift.model import load_tokenizer

    lengths = [len(r.input_ids) for r in encode_all(load_tokenizer(smollm2()), load_examples(DATA),
                                                    template_options(None, None, None), 4096, False)[0]]
    epoch = {f"global batch {g}, micro-batch {m}, {'grouped' if grouped else 'drawn order'}":
             padding_ratio(lengths, g, m, grouped) for g in (256, args.rows) for m in (4, 8) for grouped in (False, True)}
    sides = {**{k: ("gift", v) for k, v in GIFT_SIDES.items()}, **{k: ("trl", v) for k, v in TRL_SIDES.items()}}
    if args.sides:
        unknown = sorted(set(args.sides) - set(sides))
        if unknown:
            ap.error(f"unknown side {unknown[0]!r}; known: {', '.join(sides)}")
        sides = {k: v for k, v in sides.items() if k in args.sides}
    previous = RESULTS / "lengths.json"  # models measured by an earlier call (other --models) are kept
    kept = json.loads(previous.read_text()).get("models", {}) if previous.exists() and not args.quick else {}
    results: dict[str, Any] = {"micro_batch": MICRO, "lora": LORA,
                               "epoch_padding_ratio_numina_2k": epoch, "length_stats": {
                                   "mean": sum(lengths) / len(lengths), "median": sorted(lengths)[len(lengths) // 2],
                                   "p95": sorted(lengths)[int(0.95 * len(lengths))], "max": max(lengths)},
                               "models": kept}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name, path in model_paths(args.models, tmp, args.quick).items():
            ann, counts = prepare(path, args.rows, tmp, args.quick)
            before = results["models"].get(name, {})  # an earlier call's runs of the same sides with the same settings
            settings_of = {**before.get("settings", {}), **{k: list(v) for k, v in sides.items()}}
            runs: dict[str, list[dict[str, Any]]] = {
                k: list(before.get("runs", {}).get(k, [])) if before.get("settings", {}).get(k) == settings_of[k]
                and before.get("tokens", {}).get("lengths") == counts["lengths"] else [] for k in settings_of}
            for _ in range(args.repeats):  # interleaved: every side once, then again
                for side, (kind, settings) in sides.items():
                    r = run_side({"side": kind, "settings": settings, "model": path, "ann": ann, "rows": args.rows,
                                  "tmp": tmp_dir})
                    runs[side].append({**r, "commit": COMMIT})
                    print(f"{name} | {side}: {r}", flush=True)
            results["models"][name] = {"rows_per_step": args.rows, "tokens": counts, "settings": settings_of,
                                       "runs": runs, "summary": summarise(runs, counts["real_tokens"])}
            write("quick-lengths" if args.quick else "lengths", results)
    return results


def summarise(runs: dict[str, list[dict[str, Any]]], real_tokens: int) -> dict[str, dict[str, float]]:
    out = {}
    for side, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out[side] = {"error": rs[0]["error"]}
            continue
        median = statistics.median(r["seconds"] for r in ok)
        out[side] = {"median_s": median, "real_tokens_per_s": real_tokens / median,
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in ok), "runs": len(ok)}
    return out


def table(results: dict[str, Any]) -> str:
    """Markdown for BENCHMARKS.md: per model, each side's real tokens/s, its ratio to gift before and peak RSS."""
    lines = []
    for name, m in results["models"].items():
        t, summ = m["tokens"], m["summary"]
        ref = summ.get("gift before", {})
        lines += [f"**{name}**: one optimiser step of {m['rows_per_step']} NuminaMath-CoT rows ({t['real_tokens']:,} real "
                  f"tokens; padded to micro-batches of {results['micro_batch']}: {t['padded_slots_drawn_order']:,} slots "
                  f"in drawn order, {t['padded_slots_grouped']:,} grouped), LoRA r={results['lora']['rank']}, "
                  "runs interleaved, each in a fresh process (median of the runs):", "",
                  "| setting | runs | real tokens/s | × gift before | peak RSS (GB) | × gift before |",
                  "|---|---|---|---|---|---|"]
        for side, r in summ.items():
            if "error" in r:
                lines.append(f"| {side} | 0 | failed: {r['error']} | | | |")
                continue
            speed = r["real_tokens_per_s"] / ref["real_tokens_per_s"] if "real_tokens_per_s" in ref else float("nan")
            mem = r["peak_rss_mb"] / ref["peak_rss_mb"] if "peak_rss_mb" in ref else float("nan")
            lines.append(f"| {side} | {r['runs']} | {r['real_tokens_per_s']:.0f} | {speed:.2f} | "
                         f"{r['peak_rss_mb'] / 1024:.1f} | {mem:.2f} |")
        lines.append("")
    ratios = results["epoch_padding_ratio_numina_2k"]
    lines += ["Padded slots / real tokens over an epoch of the 2k rows (SmolLM2's template; lengths "
              + ", ".join(f"{k} {v:.0f}" for k, v in results["length_stats"].items()) + "):", "",
              "| layout | padded / real |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
