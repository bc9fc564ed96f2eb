"""The experiment report: results.json, report.md and its figures."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .annotate import read_annotations
from .atomic import write_text_atomic
from .data import IGNORE
from .plots import bar_plot, frontier_plot, histogram, scaling_plot


def headline(metrics: dict[str, Any]) -> str:
    return "accuracy" if "accuracy" in metrics else "prompt_level_strict_acc"


def fmt(m: dict[str, Any]) -> str:
    return f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"


def results_table(methods: dict[str, dict[str, dict]], roles: dict[str, str]) -> str:
    """Markdown: one row per method, the headline metric of each benchmark (greedy), then Avg@k (the paper's
    protocol at k = 16, T = 1, top-p = 1), maj@k and pass@k of task benchmarks."""
    benches = list(next(iter(methods.values())))
    cols = [(b, headline(methods[next(iter(methods))][b])) for b in benches]
    for b in benches:
        ks = [int(k.split("@")[1]) for k in next(iter(methods.values()))[b] if k.startswith("pass@")]
        if ks and roles.get(b, "task") == "task":
            cols += [(b, f"avg@{max(ks)}"), (b, f"maj@{max(ks)}"), (b, f"pass@{max(ks)}")]
    head = "| method | " + " | ".join(f"{b} {m}" + (" (retention)" if roles.get(b) == "retention" else "")
                                     for b, m in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for method, res in methods.items():
        lines.append(f"| {method} | " + " | ".join(fmt(res[b][m]) if m in res[b] else "–" for b, m in cols) + " |")
    return "\n".join(lines)


def changes(methods: dict[str, dict[str, dict]], roles: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per method, the headline metric of each task and retention benchmark minus the instruct model's, in points."""
    ref = methods["instruct"]
    return {m: {b: 100 * (r[b][headline(r[b])]["value"] - ref[b][headline(ref[b])]["value"])
                for b in r if roles.get(b) in ("task", "retention")} for m, r in methods.items() if m != "instruct"}


def verdict_table(methods: dict[str, dict[str, dict]], roles: dict[str, str]) -> str:
    """Markdown: each method's change against the untouched instruct model, in points, task benchmarks first."""
    delta = changes(methods, roles) if "instruct" in methods else {}
    if not delta:  # nothing to compare with the instruct model
        return ""
    benches = sorted(next(iter(delta.values())), key=lambda b: roles[b] != "task")
    lines = ["Change against the untouched instruct model, in points:", "",
             "| method | " + " | ".join(f"{b} ({roles[b]})" for b in benches) + " |", "|---|" + "---|" * len(benches)]
    lines += [f"| {m} | " + " | ".join(f"{d[b]:+.1f}" for b in benches) + " |" for m, d in delta.items()]
    return "\n".join(lines) + "\n"


def settings_text(settings: dict[str, float] | None) -> str:
    """'γ 0.5, λ 0.25' for a chosen point; λ 0 is the instruct model itself."""
    if settings is None:
        return "none keeps the floor"
    if "scale" not in settings:  # an untrained reference point (base, instruct): no adapter, no λ
        return "untouched"
    if settings["scale"] == 0:
        return "λ 0 (keep instruct)"
    return ", ".join(f"{SYMBOLS.get(k, k)} {v:g}" for k, v in settings.items() if k != "scale") + \
        (", " if len(settings) > 1 else "") + f"λ {settings['scale']:g}"


SYMBOLS = {"gamma": "γ", "rho_ratio": "ratio", "filter_keep": "keep", "eaft_alpha": "α", "asft_alpha": "α", "scale": "λ"}


def interval(d: dict[str, float]) -> str:
    return f"{100 * d['value']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"


def preconditions_line(pre: dict[str, Any]) -> str:
    """Issue 44's preconditions this run measured, each against its bound (gift.preconditions.BOUNDS): whether the
    pair and data are like the paper's in what decides if GIFT can add anything, read before any result."""
    text = {"P2": lambda: f"P2 re-learning {pre['P2']:.1%} of GIFT's step-0 loss (≤ 50%)",
            "P3": lambda: f"P3 {pre['P3_runaway']} runaway(s) of {pre['P3']} reversal(s) (none)",
            "P4": lambda: f"P4 low-q loss {pre['P4']['uniform']:.1%} uniform / {pre['P4']['gift']:.1%} GIFT "
                          f"(65-90% / 15-45%; paper 79.7% / 29.6%)",
            "P5": lambda: f"P5 Shadow-FT ‖ΔW‖/‖W_I − W_B‖ {sum(pre['P5']) / len(pre['P5']):.3f} (≤ 0.3)"}
    met = pre["met"]
    cells = [f"{text[p]()} {'✓' if ok else '✗'}" for p, ok in met.items()]
    return (f"Preconditions ({sum(met.values())} of {len(met)} met; docs/experiments.md; a world that misses one says "
            f"nothing about the paper's claim): " + "; ".join(cells))


def verdict(summary: dict[str, Any]) -> str:
    """A few lines for the screen: per method, its (dev-chosen) point and its test change against instruct with the
    paired 95% interval, then the model to ship."""
    methods, roles, paired = summary["methods"], summary["roles"], summary.get("paired", {})
    if "instruct" not in methods:
        return ""
    warned = [f for f in summary.get("check", []) if f["level"] == "WARNING"]
    lines = [f"Pair check: {len(warned)} warning(s) (report.md opens with them): "
             + "; ".join(f"{f['topic']}: {f['message'].split(':')[0]}" for f in warned)] if warned else []
    if summary.get("preconditions"):
        lines.append(preconditions_line(summary["preconditions"]))
    task = [b for b in roles if roles[b] == "task" and b in methods["instruct"]]
    kept = [b for b in roles if roles[b] == "retention" and b in methods["instruct"]]
    if not task:
        return "\n".join(lines)
    k = max((int(n.split("@")[1]) for b in task for n in methods["instruct"][b] if n.startswith("avg@")), default=1)
    chosen = "at its dev-chosen point" if summary.get("selection") else "at λ 1"
    lines.append(f"Test, each method {chosen}, change against the untouched instruct model in points with paired "
                 f"95% intervals (task: {', '.join(task)}, greedy" + (f" and avg@{k}" if k > 1 else "")
                 + (f"; retention: {', '.join(kept)}):" if kept else "; no retention benchmark):"))
    for m in methods:
        if m == "instruct" or m not in paired or "instruct" not in paired[m]:
            continue
        d = paired[m]["instruct"]
        cells = [f"{b} {interval(d[b][headline(methods[m][b])])}" for b in task]
        cells += [f"{b} avg@{k} {interval(d[b][f'avg@{k}'])}" for b in task if k > 1 and f"avg@{k}" in d[b]]
        cells += [f"{b} {interval(d[b][headline(methods[m][b])])}" for b in kept]
        where = settings_text(summary.get("points", {}).get(m)) if summary.get("selection") or m == "gift-published" \
            else ""
        lines.append(f"  {m:<15}" + (f" ({where})" if where else "") + "  " + "; ".join(cells))
    rec = summary.get("recommendation")
    if rec:
        sel = summary["selection"]
        floor = f"dev retention ≥ {100 * sel['floor']:.1f}% (instruct {100 * sel['instruct']['retention']:.1f}%)"
        if rec["method"] == "instruct":
            lines.append(f"Recommendation (chosen on dev, {floor}): keep the instruct model; no method's dev-chosen "
                         f"point scores higher on the dev task.")
        else:
            m = rec["method"]
            d = paired[m]["instruct"]
            gain = [d[b][headline(methods[m][b])] for b in task]
            beats = all(g["lo"] > 0 for g in gain)
            lines.append(f"Recommendation (chosen on dev, {floor}): {m} at {settings_text(summary['points'][m])}; on "
                         f"test it {'beats' if beats else 'does not beat'} the instruct model on the task "
                         f"({', '.join(interval(g) for g in gain)} points, paired 95%"
                         + ("" if beats else "; the interval reaches 0 or below") + ").")
    shipped = summary.get("shipped")
    if shipped:
        lines.append(f"Shipped: {shipped['path']} ({shipped['dtype']}, seed {shipped['seed']})"
                     + (f"; its test figures are the served candidate's, and {shipped['rounding_warning']}"
                        if shipped["differs"] else "") + ".")
    return "\n".join(lines)


def composite(res: dict[str, dict], benches: list[str]) -> float:
    """The mean headline metric over these benchmarks (a task or retention axis); res: benchmark -> metric -> value."""
    return statistics.mean(res[b][headline(res[b])]["value"] for b in benches)


def selection_table(selection: dict[str, Any]) -> str:
    """Markdown: per method, its dev-chosen point and the dev figures that chose it, and every candidate."""
    start = selection["instruct"]
    lines = [f"Floor: dev retention ≥ {100 * selection['floor']:.1f}% (instruct {100 * start['retention']:.1f}%, dev task "
             f"{100 * start['task']:.1f}%); dev figures are means over seeds {selection['seeds']}.", "",
             "| method | chosen | dev task | dev retention | candidates (task / retention %) |", "|---|---|---|---|---|"]
    for m, sel in selection["methods"].items():
        cands = "; ".join(f"{settings_text({k: v for k, v in p.items() if k not in ('task', 'retention')})}: "
                          f"{100 * p['task']:.1f} / {100 * p['retention']:.1f}" for p in sel["points"][1:])
        dev = sel["dev"]
        figures = f"{100 * dev['task']:.1f} | {100 * dev['retention']:.1f}" if dev else "– | –"
        lines.append(f"| {m} | {settings_text(sel['chosen'])} | {figures} | {cands} |")
    rec = selection["recommendation"]["method"]
    at = "" if rec == "instruct" else f" at {settings_text(selection['methods'][rec]['chosen'])}"
    lines += ["", f"Recommended on dev: **{rec}**{at}."]
    return "\n".join(lines)


def paired_table(summary: dict[str, Any]) -> str:
    """Markdown: per method, test differences against instruct and against the recommended model, with paired 95%
    intervals and the minimum detectable difference (80% power) at the run's seeds and problems."""
    lines = ["| method | against | benchmark | metric | difference (points) | paired 95% | detectable (80%) |",
             "|---|---|---|---|---|---|---|"]
    for m, sides in summary["paired"].items():
        for other, benches in sides.items():
            for b, metrics in benches.items():
                for metric, d in metrics.items():
                    lines.append(f"| {m} | {other} | {b} | {metric} | {100 * d['value']:+.1f} | "
                                 f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] | {100 * d['mdd']:.1f} |")
    return "\n".join(lines)


COMPOSITION = (("unanswered", "unanswered"), ("capped", "cut at the cap"), ("fallback_only", "last number only"),
               ("accuracy_without_fallback", "accuracy without fallback"), ("format_failures", "format failures"),
               ("content_failures", "content failures"))


def composition_table(per_seed: dict[str, dict[int, dict]]) -> str:
    """Markdown: per method and benchmark, what its score is made of (gift.evaluate.composition), mean over seeds."""
    lines = ["| method | benchmark | answers | " + " | ".join(label for _, label in COMPOSITION) + " |",
             "|---|---|---|" + "---|" * len(COMPOSITION)]
    for m, seeds in per_seed.items():
        first = next(iter(seeds.values()))
        for b, res in first.items():
            for which in res.get("composition", {}):
                rows = [s[b]["composition"][which] for s in seeds.values()]
                cells = [[r.get(key) for r in rows] for key, _ in COMPOSITION]
                lines.append(f"| {m} | {b} | {which} | " + " | ".join(
                    "–" if any(v is None for v in vals) else f"{100 * statistics.mean(vals):.1f}%" for vals in cells) + " |")
    return "\n".join(lines)


def dev_frontier(selection: dict[str, Any]) -> dict[str, list[tuple[float, float, float]]]:
    """method -> [(λ, dev task, dev retention)] at the method's chosen knob (the first candidate's where λ 0 or
    nothing was chosen)."""
    out = {}
    for m, sel in selection["methods"].items():
        chosen = sel["chosen"] if sel["chosen"] and sel["chosen"]["scale"] > 0 else sel["points"][1]
        knob = {k: v for k, v in chosen.items() if k not in ("task", "retention", "scale")}
        pts = [p for p in sel["points"] if p["scale"] == 0 or all(p.get(k) == v for k, v in knob.items())]
        out[m] = [(p["scale"], p["task"], p["retention"]) for p in sorted(pts, key=lambda p: p["scale"])]
    return out


def confidences(path: Path) -> list[float]:
    rows, conf, _ = read_annotations(path)
    return [q for r, c in zip(rows, conf) for q, y in zip(c, r.labels) if y != IGNORE]


def write_report(out: Path, cfg: Any, summary: dict[str, Any], per_seed: dict[str, dict[int, dict]],
                 annotations: dict[str, Path]) -> None:
    methods, roles = summary["methods"], summary["roles"]
    write_text_atomic(out / "results.json", json.dumps({**summary, "per_seed": per_seed}, indent=2) + "\n")
    figures = []
    bar_plot({b: {m: (r[b][headline(r[b])]["value"], *r[b][headline(r[b])]["ci"]) for m, r in methods.items()}
              for b in next(iter(methods.values()))}, "accuracy per method (95% CI)", out / "accuracy.png")
    figures.append(("Accuracy per method", "accuracy.png"))
    task = [b for b, role in roles.items() if role == "task"]
    curves = {m: {b: {"metrics": r[b]} for b in task if b in r} for m, r in methods.items()}
    if any("@" in k for c in curves.values() for b in c.values() for k in b["metrics"]):
        scaling_plot(curves, out / "scaling.png")
        figures.append(("Test-time scaling (avg/maj/pass@k)", "scaling.png"))
    if annotations:
        histogram({f"{t} teacher": confidences(p) for t, p in annotations.items()},
                  "teacher confidence on training tokens", "q = p(gold token)", out / "confidence_hist.png")
        figures.append(("Teacher confidences", "confidence_hist.png"))
    if summary.get("selection"):
        sel = summary["selection"]
        frontier_plot(dev_frontier(sel), [100 * (sel["instruct"]["retention"] - sel["floor"])], out / "frontier.png",
                      "dev candidates over λ at each method's chosen knob (the floor dotted)")
        figures.insert(0, ("Dev frontier over λ, each method at its chosen knob", "frontier.png"))
    signal = summary["signal"]
    if signal:
        bar_plot({"weight on q<0.5": {m: (s["weight_share"],) * 3 for m, s in signal.items()},
                  "loss on q<0.5": {m: (s["loss_share"],) * 3 for m, s in signal.items()}},
                 "share of the learning signal on low-confidence tokens", out / "signal.png", ylabel="share")
        figures.append(("Learning signal on low-confidence tokens", "signal.png"))
    found = sorted(summary.get("check", []), key=lambda f: f["level"] != "WARNING")
    check = ["## Pair check (gift check-pair; check/check.md has every figure)", "", "| level | topic | finding |",
             "|---|---|---|", *(f"| {f['level']} | {f['topic']} | {f['message']} |" for f in found), ""] if found else []
    pre = [preconditions_line(summary["preconditions"]), ""] if summary.get("preconditions") else []
    lines = ["# Experiment report", "", *check, *pre,
             f"Base `{cfg.base}`, instruct `{cfg.instruct}`, data `{cfg.train_data}`, seeds {cfg.seeds}. Values are "
             f"means over seeds with 95% t intervals for the crossed seed × problem design (with one seed: over "
             f"problems).", "", verdict_table(methods, roles), "", results_table(methods, roles), ""]
    if summary.get("selection"):
        lines += ["## Selection on dev (the same budget for every transfer method; test never read)", "",
                  selection_table(summary["selection"]), ""]
    if summary.get("paired"):
        lines += ["## Paired differences on test (per seed and problem, a t interval for the crossed design)", "",
                  paired_table(summary), ""]
    lines += ["## What the scores are made of (shares of answers, mean over seeds)", "", composition_table(per_seed), ""]
    if signal:
        lines += ["## Learning signal on tokens the instruct model finds unlikely (q < 0.5)", "",
                  "| method | share of weight | share of weighted loss |", "|---|---|---|"]
        lines += [f"| {m} | {s['weight_share']:.3f} | {s['loss_share']:.3f} |" for m, s in signal.items()] + [""]
    lines += [f"![{title}]({name})" for title, name in figures]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
