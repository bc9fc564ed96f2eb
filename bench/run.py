"""gift's performance suite: every figure is a ratio measured in one run, alternating the two sides.

    python bench/run.py [--quick] [--parts check train loss annotate generate merge trl]

0. check:    gift check-pair on a Qwen2.5-0.5B-shaped pair: seconds and peak memory against one model's size

1. train:    GIFT training step vs a plain LoRA SFT step (HF loss from full logits), same model/batch/LoRA
2. loss:     our fused weighted loss (chunked, gradient formed in the forward pass) vs a full-softmax reference,
             at vocabularies 49,152 and 151,936
3. annotate: gold-token pass vs full-softmax reference (tokens/s, memory); annotation / one training epoch
4. generate: batched generation vs one prompt at a time
5. merge:    shard-by-shard merge of a Qwen2.5-0.5B-shaped model vs PEFT merge_and_unload + save
6. trl:      one optimiser step of gift train (GIFT) and of gift.trl.GIFTTrainer vs TRL's SFTTrainer + PEFT
             (plain LoRA SFT, TRL's defaults but fp32 on CPU), same model, batch, length and LoRA
Writes bench/results/<part>.json and bench/results/summary.md. --quick runs it all on tiny random models.
Training on real (NuminaMath-CoT) lengths is bench/lengths.py, run apart (about an hour); its table joins the summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import QWEN05, RESULTS, alternate, machine, qwen05_config, ratio, smollm2, write  # noqa: E402

from gift.data import IGNORE  # noqa: E402
from gift.loss import FusedWeightedNLL, GoldLogprobs, rows_per_chunk  # noqa: E402
from gift.tiny import model_config, random_model  # noqa: E402

ASSETS = Path(__file__).parents[1] / "src" / "gift" / "assets" / "tiny"


def models(quick: bool) -> list[tuple[str, Any, int, int]]:
    """(name, model factory, batch, sequence length) for the train and annotate parts."""
    from gift.model import load_model
    if quick:
        return [("random llama (tiny)", lambda: random_model(model_config("llama", 300), 0), 4, 32)]
    out = []
    if (ASSETS / "base").is_dir():
        out.append(("bundled tiny base (0.9M)", lambda: load_model(str(ASSETS / "base")), 32, 64))
    if smollm2():
        out.append(("SmolLM2-135M (GGUF)", lambda: load_model(smollm2()), 4, 256))
    out.append(("Qwen2.5-0.5B shape, 2 of 24 layers, random", lambda: random_model(qwen05_config(2), 0), 2, 256))
    return out


def batch_for(model: Any, b: int, t: int) -> dict[str, torch.Tensor]:
    """Random tokens; the first third of each row is prompt (label -100), q uniform in (0, 1)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (b, t), generator=g)
    labels = ids.clone()
    labels[:, : t // 3] = IGNORE
    n = int((labels[:, 1:] != IGNORE).sum())
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "q": torch.rand(n, generator=g)}


def lora(model: Any, rank: int) -> Any:
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def train_row(name: str, model: Any, b: int, t: int, rank: int, repeats: int) -> dict[str, Any]:
    model = lora(model, rank).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = batch_for(model, b, t)
    scorer = GoldLogprobs(model)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def sft_step():  # what a plain LoRA script does: the model's own loss over full logits
        model(**inputs, labels=batch["labels"]).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def gift_step():  # the path gift train takes: fused weighted NLL with weights known before the forward pass
        loss = scorer(**inputs, labels=batch["labels"], coef=batch["q"], scale=1 / batch["q"].sum()).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    res = alternate({"gift": gift_step, "lora_sft": sft_step}, repeats)
    row = {"model": name, "batch": [b, t], "lora_rank": rank, "result": res,
           "ratio_gift_over_sft": ratio(res, "gift", "lora_sft")}
    print(f"train  {name}: gift/sft time {row['ratio_gift_over_sft']['time']:.3f}x, "
          f"memory {row['ratio_gift_over_sft']['memory']:.3f}x")
    return row


def part_train(quick: bool, repeats: int) -> dict[str, Any]:
    rows = [train_row(name, factory(), b, t, 8 if quick else 64, repeats) for name, factory, b, t in models(quick)]
    return {"goal": {"time": "<= 1.03", "memory": "<= 1.02"}, "rows": rows}


def loss_row(vocab: int, n: int, h: int, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = (torch.randn(vocab, h, generator=g) * 0.02).requires_grad_()
    targets, q = torch.randint(0, vocab, (n,), generator=g), torch.rand(n, generator=g)

    def ours():  # the fused weighted NLL gift train uses (gradient formed in the forward pass, chunk by chunk)
        loss = FusedWeightedNLL.apply(hidden, weight, targets, q, 1 / q.sum(), None, None, 0.0, rows_per_chunk(vocab))[0]
        loss.backward()
        hidden.grad = weight.grad = None

    def full_softmax():  # as the published code: full logits, full softmax, then the gold column
        probs = torch.softmax((hidden @ weight.T).float(), dim=-1)  # (N, V)
        gold = probs.gather(1, targets[:, None]).squeeze(1)
        (-(q * gold.log()).sum() / q.sum()).backward()
        hidden.grad = weight.grad = None

    res = alternate({"ours": ours, "full_softmax": full_softmax}, repeats)
    row = {"vocab": vocab, "tokens": n, "hidden": h, "result": res,
           "ratio_ours_over_reference": ratio(res, "ours", "full_softmax")}
    print(f"loss   V={vocab}: ours/full-softmax time {row['ratio_ours_over_reference']['time']:.3f}x, "
          f"memory {row['ratio_ours_over_reference']['memory']:.3f}x")
    return row


def part_loss(quick: bool, repeats: int) -> dict[str, Any]:
    n, h = (256, 64) if quick else (1024, 896)
    return {"rows": [loss_row(vocab, n, h, repeats) for vocab in ([1000] if quick else [49152, 151936])]}


def annotate_row(name: str, model: Any, b: int, t: int, repeats: int) -> dict[str, Any]:
    model = model.eval()
    batch = batch_for(model, b, t)
    scorer = GoldLogprobs(model)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    @torch.inference_mode()
    def ours():
        scorer(**inputs, labels=batch["labels"]).exp()

    @torch.inference_mode()
    def full_softmax():  # full logits and a full softmax copy, then the gold column
        probs = torch.softmax(model(**inputs).logits.float(), -1)  # (B, T, V)
        probs[:, :-1].gather(2, batch["input_ids"][:, 1:, None])

    res = alternate({"ours": ours, "full_softmax": full_softmax}, repeats)
    for side in res.values():
        side["tokens_per_s"] = b * t / side["median_s"]
    row = {"model": name, "batch": [b, t], "result": res, "ratio_ours_over_reference": ratio(res, "ours", "full_softmax")}
    print(f"annot  {name}: {res['ours']['tokens_per_s']:.0f} tok/s vs {res['full_softmax']['tokens_per_s']:.0f}, "
          f"memory {row['ratio_ours_over_reference']['memory']:.3f}x")
    return row


def part_annotate(quick: bool, repeats: int) -> dict[str, Any]:
    rows = [annotate_row(name, factory(), b, t, repeats) for name, factory, b, t in models(quick)]
    return {"rows": rows, "annotation_over_epoch": annotation_over_epoch(quick)}


def annotation_over_epoch(quick: bool) -> dict[str, Any]:
    """gift annotate over a data set vs one epoch of gift train (GIFT weights) on it, wall-clock."""
    from gift.annotate import annotate
    from gift.config import AnnotateConfig, TrainConfig
    from gift.train import train
    if quick or not (ASSETS / "base").is_dir():
        return {"skipped": "needs the bundled tiny pair"}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        annotate(AnnotateConfig(teacher=str(ASSETS / "instruct"), data=str(ASSETS / "data" / "math_train.jsonl"),
                                out=f"{tmp}/ann", batch_size=64, max_length=256))
        annotate_s = time.perf_counter() - t
        t = time.perf_counter()
        train(TrainConfig(model=str(ASSETS / "base"), data=f"{tmp}/ann", out=f"{tmp}/ad", rank=16, alpha=32,
                          batch_size=32, epochs=1, save_steps=10_000))
        epoch_s = time.perf_counter() - t
    print(f"annot  annotation {annotate_s:.1f}s / epoch {epoch_s:.1f}s = {annotate_s / epoch_s:.2f}")
    return {"data": "tiny math_train (2000 rows)", "annotate_s": annotate_s, "epoch_s": epoch_s,
            "ratio": annotate_s / epoch_s, "goal": "<= 0.35"}


def part_generate(quick: bool, repeats: int) -> dict[str, Any]:
    from generation import measure
    path = smollm2() if not quick else None
    if path is None:
        with tempfile.TemporaryDirectory() as tmp:
            return measure(tiny_random_dir(tmp), prompts=8, new_tokens=8)
    return measure(path, prompts=32, new_tokens=32)


def tiny_random_dir(tmp: str) -> str:
    from gift.tiny import build_tokenizer, save_tokenizer
    tok = build_tokenizer(["Janet has 3 ducks and 4 eggs. How many?"] * 10, 300)
    model = random_model(model_config("llama", len(tok)), 0)
    model.save_pretrained(tmp)
    save_tokenizer(tok, tmp)
    return tmp


MERGE_SIDES = {
    "ours": "from gift.config import MergeConfig; from gift.merge import merge; "
            "merge(MergeConfig(instruct=sys.argv[1] + '/instruct', adapter=sys.argv[1] + '/adapter', out=sys.argv[2]))",
    "peft_merge_and_unload": "from peft import PeftModel; from transformers import AutoModelForCausalLM; "
                             "m = AutoModelForCausalLM.from_pretrained(sys.argv[1] + '/instruct'); "
                             "PeftModel.from_pretrained(m, sys.argv[1] + '/adapter').merge_and_unload()"
                             ".save_pretrained(sys.argv[2])",
}


def run_side(code: str, *args: str) -> dict[str, float]:
    """Seconds and peak resident memory (MB) of `code` in a fresh Python process. The peak is the child's own
    VmHWM: ru_maxrss would carry over the parent's peak across fork and exec."""
    import subprocess
    script = "import re, sys, time\nt = time.perf_counter()\n" + code + "\nprint(time.perf_counter() - t, " \
             "re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True).stdout
    seconds, maxrss_kb = out.split()[-2:]
    return {"seconds": float(seconds), "peak_rss_mb": int(maxrss_kb) / 1024}


def part_merge(quick: bool, repeats: int) -> dict[str, Any]:
    """Our shard-by-shard merge vs PEFT's merge_and_unload + save_pretrained, same adapter, fresh processes."""
    layers = 2 if quick else QWEN05["layers"]
    cfg = model_config("llama", 300) if quick else qwen05_config(layers)
    with tempfile.TemporaryDirectory() as tmp:
        model = random_model(cfg, 0).to(torch.bfloat16)
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(f"{tmp}/instruct")
        for f in Path(tiny_random_dir(f"{tmp}/tok")).glob("tokenizer*"):
            (Path(tmp) / "instruct" / f.name).write_bytes(f.read_bytes())
        peft_model = lora(model, 8 if quick else 64)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.normal_(std=0.01)
        peft_model.save_pretrained(f"{tmp}/adapter")
        del model, peft_model
        res = {name: run_side(code, tmp, f"{tmp}/{name}") for name, code in MERGE_SIDES.items()}
    print(f"merge  ours {res['ours']['seconds']:.1f}s {res['ours']['peak_rss_mb']:.0f} MB; PEFT "
          f"{res['peft_merge_and_unload']['seconds']:.1f}s {res['peft_merge_and_unload']['peak_rss_mb']:.0f} MB")
    return {"model": "tiny random llama" if quick else f"Qwen2.5-0.5B shape ({layers} layers), random bf16 weights",
            "parameters": params, "lora_rank": 8 if quick else 64, "result": res}


def part_check(quick: bool, repeats: int) -> dict[str, Any]:
    """gift check-pair on a Qwen2.5-0.5B-shaped random bf16 pair (instruct = base + small noise), in a fresh process:
    seconds and peak resident memory against the size of one model's weights (the check streams tensor by tensor)."""
    from gift.tiny import perturbed

    cfg = model_config("llama", 300) if quick else qwen05_config(QWEN05["layers"])
    with tempfile.TemporaryDirectory() as tmp:
        base = random_model(cfg, 0).to(torch.bfloat16)
        params = sum(p.numel() for p in base.parameters())
        base.save_pretrained(f"{tmp}/base")
        perturbed(base, 0.002, seed=1).save_pretrained(f"{tmp}/instruct")
        del base
        tok = Path(tiny_random_dir(f"{tmp}/tok"))
        for side in ("base", "instruct"):
            for f in [*tok.glob("tokenizer*"), *tok.glob("chat_template*")]:
                (Path(tmp) / side / f.name).write_bytes(f.read_bytes())
        size_mb = sum(f.stat().st_size for f in (Path(tmp) / "base").glob("*.safetensors")) / 2**20
        code = ("from gift.config import CheckConfig\nfrom gift.diagnose import check_pair\n"
                "check_pair(CheckConfig(base=sys.argv[1] + '/base', instruct=sys.argv[1] + '/instruct'), quiet=True)")
        empty = run_side("import torch, transformers, gift.diagnose")  # what importing the libraries costs alone
        runs = [run_side(code, tmp) for _ in range(repeats)]
    res = {"seconds": sorted(r["seconds"] for r in runs)[len(runs) // 2],
           "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "imports_peak_rss_mb": empty["peak_rss_mb"],
           "one_model_mb": size_mb}
    print(f"check  {res['seconds']:.1f}s, peak {res['peak_rss_mb']:.0f} MB (imports alone {empty['peak_rss_mb']:.0f} MB;"
          f" one model's weights {size_mb:.0f} MB)")
    return {"model": "tiny random llama" if quick else "Qwen2.5-0.5B shape, random bf16 weights",
            "parameters": params, "result": res}


def trl_row(name: str, factory: Any, b: int, t: int, rank: int, repeats: int) -> dict[str, Any]:
    import datasets
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from gift.data import GIFTCollator
    from gift.trl import GIFTTrainer

    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(b):
        ids = torch.randint(3, 2000, (t,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE] * (t // 3) + ids[t // 3:],
                     "confidence": torch.rand(t, generator=g).tolist()})
    data = datasets.Dataset.from_list(rows)
    lora_cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules="all-linear",
                          task_type="CAUSAL_LM")
    common = dict(per_device_train_batch_size=b, max_steps=1, use_cpu=not torch.cuda.is_available(), report_to="none",
                  save_strategy="no", bf16=torch.cuda.is_available(), max_length=t)

    def trainer(cls: Any, out: str, **kw: Any) -> Any:
        tr = cls(model=factory(), args=SFTConfig(output_dir=out, **common), train_dataset=data, peft_config=lora_cfg, **kw)
        tr.create_optimizer_and_scheduler(num_training_steps=1)
        return tr

    with tempfile.TemporaryDirectory() as tmp:
        from tokenizers import Tokenizer
        from tokenizers import models as tok_models
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(tok_models.WordLevel({"<pad>": 0, "<unk>": 1}, "<unk>")),
                                      pad_token="<pad>", eos_token="<unk>")
        plain = trainer(SFTTrainer, f"{tmp}/trl", processing_class=tok, data_collator=GIFTCollator(0, [1]))
        ours = trainer(GIFTTrainer, f"{tmp}/gift", processing_class=tok, data_collator=GIFTCollator(0, [1]), method="gift")
        batch = GIFTCollator(0, [1])(rows)
        plain_batch = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

        def step(tr: Any, inputs: dict[str, Any]) -> Any:
            def run() -> None:
                tr.training_step(tr.model, dict(inputs), tr._get_num_items_in_batch([inputs], tr.args.device))
                tr.optimizer.step()
                tr.optimizer.zero_grad(set_to_none=True)
            return run

        res = alternate({"gift_trainer": step(ours, batch), "trl_sft": step(plain, plain_batch)}, repeats)
    tokens = b * t
    for side in res.values():
        side["tokens_per_s"] = tokens / side["median_s"]
    row = {"model": name, "batch": [b, t], "lora_rank": rank, "result": res,
           "ratio_gift_over_trl": ratio(res, "gift_trainer", "trl_sft")}
    row["ratio_gift_over_trl"]["tokens_per_s"] = res["gift_trainer"]["tokens_per_s"] / res["trl_sft"]["tokens_per_s"]
    print(f"trl    {name}: GIFTTrainer/TRL SFT tokens/s {row['ratio_gift_over_trl']['tokens_per_s']:.3f}x, "
          f"memory {row['ratio_gift_over_trl']['memory']:.3f}x")
    return row


def part_trl(quick: bool, repeats: int) -> dict[str, Any]:
    from gift.model import load_model
    if quick:
        rows = [trl_row("random llama (tiny)", lambda: random_model(model_config("llama", 2048), 0), 2, 32, 8, repeats)]
    else:
        rows = [trl_row("SmolLM2-135M (GGUF)", lambda: load_model(smollm2()), 4, 256, 64, repeats)] if smollm2() else []
        rows.append(trl_row("Qwen2.5-0.5B shape, 2 of 24 layers, random", lambda: random_model(qwen05_config(2), 0),
                            2, 256, 64, repeats))
    return {"goal": {"tokens_per_s": ">= 1.2", "memory": "<= 0.8"}, "rows": rows}


PARTS = {"check": part_check, "train": part_train, "loss": part_loss, "annotate": part_annotate, "generate": part_generate,
         "merge": part_merge, "trl": part_trl}


def summary(results: dict[str, Any]) -> str:
    lines = [f"Machine: {json.dumps(machine())}", ""]
    if "train" in results:
        lines += ["| train step | gift / plain LoRA SFT: time | memory |", "|---|---|---|"]
        lines += [f"| {r['model']} ({r['batch'][0]}×{r['batch'][1]}) | {r['ratio_gift_over_sft']['time']:.3f} | "
                  f"{r['ratio_gift_over_sft']['memory']:.3f} |" for r in results["train"]["rows"]] + [""]
    if "loss" in results:
        lines += ["| weighted loss | ours / full softmax: time | memory |", "|---|---|---|"]
        lines += [f"| vocab {r['vocab']}, {r['tokens']} tokens | {r['ratio_ours_over_reference']['time']:.3f} | "
                  f"{r['ratio_ours_over_reference']['memory']:.3f} |" for r in results["loss"]["rows"]] + [""]
    if "annotate" in results:
        lines += ["| annotation | ours tok/s | full-softmax tok/s | memory ratio |", "|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['result']['ours']['tokens_per_s']:.0f} | "
                  f"{r['result']['full_softmax']['tokens_per_s']:.0f} | {r['ratio_ours_over_reference']['memory']:.3f} |"
                  for r in results["annotate"]["rows"]]
        ae = results["annotate"]["annotation_over_epoch"]
        if "ratio" in ae:
            lines += ["", f"Annotation / one training epoch ({ae['data']}): {ae['annotate_s']:.1f} s / "
                          f"{ae['epoch_s']:.1f} s = **{ae['ratio']:.2f}** (goal ≤ 0.35)"]
        lines.append("")
    if "generate" in results:
        g = results["generate"]
        lines += [f"Generation ({g['model']}, {g['prompts']} prompts × {g['new_tokens']} tokens): one at a time "
                  f"{g['seconds']['one_at_a_time']:.1f} s, batched {g['seconds']['batched']:.1f} s = "
                  f"**{g['speedup_batched']:.1f}×** (goal ≥ 5× on CPU)", ""]
    if "trl" in results:
        lines += ["| one optimiser step | GIFTTrainer tok/s | TRL SFTTrainer tok/s | tok/s ratio | memory ratio |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['model']} ({r['batch'][0]}×{r['batch'][1]}, r={r['lora_rank']}) | "
                  f"{r['result']['gift_trainer']['tokens_per_s']:.0f} | {r['result']['trl_sft']['tokens_per_s']:.0f} | "
                  f"{r['ratio_gift_over_trl']['tokens_per_s']:.3f} | {r['ratio_gift_over_trl']['memory']:.3f} |"
                  for r in results["trl"]["rows"]] + [""]
    if "merge" in results:
        m = results["merge"]["result"]
        lines += [f"Merge ({results['merge']['model']}, {results['merge']['parameters'] / 1e6:.0f}M parameters, LoRA "
                  f"r={results['merge']['lora_rank']}), each in a fresh process: ours {m['ours']['seconds']:.1f} s, "
                  f"{m['ours']['peak_rss_mb']:.0f} MB peak RSS; PEFT merge_and_unload + save "
                  f"{m['peft_merge_and_unload']['seconds']:.1f} s, {m['peft_merge_and_unload']['peak_rss_mb']:.0f} MB", ""]
    if "check" in results:
        c = results["check"]["result"]
        lines += [f"gift check-pair ({results['check']['model']}, {results['check']['parameters'] / 1e6:.0f}M parameters "
                  f"a model), in a fresh process: {c['seconds']:.1f} s, {c['peak_rss_mb']:.0f} MB peak RSS "
                  f"({c['imports_peak_rss_mb']:.0f} MB of it importing the libraries); one model's weights "
                  f"{c['one_model_mb']:.0f} MB", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny random models: a smoke test of the suite")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    prefix = "quick-" if args.quick else ""
    results = {}
    for part in args.parts:
        results[part] = PARTS[part](args.quick, 2 if args.quick else args.repeats)
        write(prefix + part, results[part])
    saved = {p: json.loads((RESULTS / f"{prefix}{p}.json").read_text()) for p in PARTS
             if (RESULTS / f"{prefix}{p}.json").exists()}  # parts not run this time keep their last figures
    text = summary({**saved, **results})
    if not args.quick and (RESULTS / "lengths.json").exists():  # bench/lengths.py: real-length training, run apart
        from lengths import table
        text += "\n" + table(json.loads((RESULTS / "lengths.json").read_text()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("quick-summary.md" if args.quick else "summary.md")).write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
