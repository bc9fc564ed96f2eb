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


def verdict(summary: dict[str, Any]) -> str:
    """A few lines for the screen: per method, task and retention change against instruct, then a reading."""
    methods, roles = summary["methods"], summary["roles"]
    if "instruct" not in methods:
        return ""
    delta = changes(methods, roles)
    warned = [f for f in summary.get("check", []) if f["level"] == "WARNING"]
    check = [f"Pair check: {len(warned)} warning(s) (report.md opens with them): "
             + "; ".join(f"{f['topic']}: {f['message'].split(':')[0]}" for f in warned)] if warned else []
    task = [b for b in roles if roles[b] == "task" and b in methods["instruct"]]
    kept = [b for b in roles if roles[b] == "retention" and b in methods["instruct"]]
    k = max((int(name.split("@")[1]) for b in task for name in methods["instruct"][b] if name.startswith("avg@")),
            default=1)
    sampled = f"; task avg@{k}: the paper's protocol" if k > 1 else ""
    if not task:
        return "\n".join(check)
    lines = check + [f"Against the untouched instruct model (points; task: {', '.join(task)}, greedy{sampled}"
                     + (f"; retention: {', '.join(kept)}):" if kept else "; no retention benchmark):")]
    for m, d in delta.items():
        t = statistics.mean(d[b] for b in task)
        avg = statistics.mean(100 * (methods[m][b][f"avg@{k}"]["value"] - methods["instruct"][b][f"avg@{k}"]["value"])
                              for b in task) if k > 1 else None
        lines.append(f"  {m:<14} task {t:+6.1f}" + (f"   task avg@{k} {avg:+6.1f}" if avg is not None else "")
                     + (f"   retention {statistics.mean(d[b] for b in kept):+6.1f}" if kept else ""))
    score = {m: statistics.mean(d[b] for b in task) for m, d in delta.items() if m not in ("base",)}
    if score:
        best = max(score, key=score.get)
        lines.append(f"Largest task gain at the headline λ: {best} ({score[best]:+.1f} points)." if score[best] > 0
                     else f"No method gains on the task at the headline λ; the smallest loss: {best} "
                          f"({score[best]:+.1f} points).")
    if summary.get("frontier"):  # the run config refuses a frontier without a retention benchmark
        points = frontier_points(summary)
        for floor in FLOORS:
            best = {m: best_under_floor(pts, floor) for m, pts in points.items()}
            lines.append(f"Frontier over λ, best task gain with retention ≥ instruct − {floor}: " + ", ".join(
                f"{m} {100 * (best[m][1] - pts[0][1]):+.1f} (λ {best[m][0]:g})" for m, pts in points.items()) + ".")
    if "gift" in delta and "shadow-ft" in delta:
        g, s = delta["gift"], delta["shadow-ft"]
        scale = summary.get("tuned", {}).get("scale", 1.0)
        lam = "" if scale == 1.0 else f"; GIFT at the dev-chosen λ = {scale:g}, Shadow-FT at 1"
        lines.append(f"GIFT against Shadow-FT (both trained on base, merged into instruct{lam}): task "
                     f"{statistics.mean(g[b] - s[b] for b in task):+.1f}"
                     + (f", retention {statistics.mean(g[b] - s[b] for b in kept):+.1f}" if kept else "") + " points.")
    return "\n".join(lines)


FLOORS = (2, 10)  # retention floors of the frontier table, in points below the instruct model


def composite(res: dict[str, dict], benches: list[str]) -> float:
    """The mean headline metric over these benchmarks (the frontier's task or retention axis)."""
    return statistics.mean(res[b][headline(res[b])]["value"] for b in benches)


def frontier_points(summary: dict[str, Any]) -> dict[str, list[tuple[float, float, float]]]:
    """method -> [(λ, task, retention)], from λ = 0 (the untouched instruct model) up."""
    roles, ref = summary["roles"], summary["methods"]["instruct"]
    task = [b for b in ref if roles.get(b) == "task"]
    kept = [b for b in ref if roles.get(b) == "retention"]
    start = (0.0, composite(ref, task), composite(ref, kept))
    return {m: [start] + [(float(x), composite(r, task), composite(r, kept)) for x, r in by_scale.items()]
            for m, by_scale in summary["frontier"].items()}


def best_under_floor(points: list[tuple[float, float, float]], floor: float) -> tuple[float, float, float]:
    """The point with the highest task score among those keeping retention ≥ instruct's − floor (points);
    λ = 0 (gain 0) always qualifies."""
    allowed = [p for p in points if p[2] >= points[0][2] - floor / 100 - 1e-12]
    return max(allowed, key=lambda p: (p[1], -p[0]))


def frontier_table(summary: dict[str, Any]) -> str:
    """Markdown: per transfer method, the best task gain over λ with retention held within each floor."""
    points, roles = frontier_points(summary), summary["roles"]
    task = [b for b in summary["methods"]["instruct"] if roles.get(b) == "task"]
    lines = ["| method | " + " | ".join(f"best task gain, retention ≥ instruct − {f}" for f in FLOORS) + " |",
             "|---|" + "---|" * len(FLOORS)]
    for method, pts in points.items():
        cells = []
        for floor in FLOORS:
            lam, t, r = best_under_floor(pts, floor)
            res = summary["methods"]["instruct"] if lam == 0 else summary["frontier"][method][f"{lam:g}"]
            ci = "; ".join(fmt(res[b][headline(res[b])]) for b in task)
            cells.append(f"{100 * (t - pts[0][1]):+.1f} at λ {lam:g} (task {ci}; retention {100 * (r - pts[0][2]):+.1f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frontier_points_table(summary: dict[str, Any]) -> str:
    """Markdown: every frontier point, task / retention in percent, a row per method, a column per λ."""
    points = frontier_points(summary)
    scales = sorted({lam for pts in points.values() for lam, _, _ in pts})
    lines = ["| method | " + " | ".join(f"λ {lam:g}" for lam in scales) + " |", "|---|" + "---|" * len(scales)]
    for method, pts in points.items():
        at = {lam: f"{100 * t:.1f} / {100 * r:.1f}" for lam, t, r in pts}
        lines.append(f"| {method} | " + " | ".join(at.get(lam, "–") for lam in scales) + " |")
    return "\n".join(lines)


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
    if summary.get("frontier") and "instruct" in methods:
        frontier_plot(frontier_points(summary), list(FLOORS), out / "frontier.png")
        figures.insert(0, ("Trade-off frontier over λ", "frontier.png"))
    signal = summary["signal"]
    if signal:
        bar_plot({"weight on q<0.5": {m: (s["weight_share"],) * 3 for m, s in signal.items()},
                  "loss on q<0.5": {m: (s["loss_share"],) * 3 for m, s in signal.items()}},
                 "share of the learning signal on low-confidence tokens", out / "signal.png", ylabel="share")
        figures.append(("Learning signal on low-confidence tokens", "signal.png"))
    found = sorted(summary.get("check", []), key=lambda f: f["level"] != "WARNING")
    check = ["## Pair check (gift check-pair; check/check.md has every figure)", "", "| level | topic | finding |",
             "|---|---|---|", *(f"| {f['level']} | {f['topic']} | {f['message']} |" for f in found), ""] if found else []
    lines = ["# Experiment report", "", *check, f"Base `{cfg.base}`, instruct `{cfg.instruct}`, data `{cfg.train_data}`, "
             f"seeds {cfg.seeds}. Values are means over seeds with 95% intervals from a bootstrap over seeds "
             f"and, within each, over problems (with one seed: over problems).", "", verdict_table(methods, roles), "",
             results_table(methods, roles), ""]
    if summary.get("frontier") and "instruct" in methods:
        seeds = cfg.frontier_seeds or cfg.seeds
        lines += [f"## Trade-off frontier over λ (seeds {seeds}; task and retention are means of the benchmarks' "
                  f"headline metrics)", "", frontier_table(summary), "", "Every point, task / retention (%):", "",
                  frontier_points_table(summary), ""]
    if signal:
        lines += ["## Learning signal on tokens the instruct model finds unlikely (q < 0.5)", "",
                  "| method | share of weight | share of weighted loss |", "|---|---|---|"]
        lines += [f"| {m} | {s['weight_share']:.3f} | {s['loss_share']:.3f} |" for m, s in signal.items()] + [""]
    tuned = summary["tuned"]
    for key, symbol in (("gamma_sweep", "γ"), ("scale_sweep", "λ")):
        sweep = tuned[key]
        if not sweep:
            continue
        names = list(next(iter(sweep.values())))
        lines += [f"## GIFT's {symbol} on the dev split (seed {cfg.seeds[0]}; chosen: {tuned[key.split('_')[0]]:g})", "",
                  f"| {symbol} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for value, res in sweep.items():
            cells = [fmt(res[b]["metrics"][headline(res[b]["metrics"])]) for b in names]
            lines.append(f"| {value:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"![{title}]({name})" for title, name in figures]
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
