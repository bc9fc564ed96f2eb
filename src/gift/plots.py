"""Figures: test-time scaling curves, method comparisons, confidence histograms (matplotlib, no display)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLES = {"avg": "-", "maj": "--", "pass": ":"}


def _curve(metrics: dict[str, Any], name: str) -> tuple[list[int], list[float]]:
    ks = sorted(int(k.split("@")[1]) for k in metrics if k.startswith(f"{name}@"))
    return ks, [metrics[f"{name}@{k}"]["value"] for k in ks]


def scaling_plot(runs: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Accuracy vs k: a row per benchmark, a panel per metric (Avg@k, maj@k, pass@k), a line per run, one
    legend beside the panels; `runs` maps a label to results.json's `benchmarks`."""
    benches = sorted({b for r in runs.values() for b, v in r.items() if any("@" in m for m in v["metrics"])})
    rows = max(len(benches), 1)
    fig, axes = plt.subplots(rows, len(STYLES), figsize=(4.2 * len(STYLES) + 2.2, 3.2 * rows), squeeze=False,
                             sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, bench in zip(axes, benches):
        for ax, name in zip(row, STYLES):
            for c, (label, results) in enumerate(runs.items()):
                ks, ys = _curve(results[bench]["metrics"], name) if bench in results else ([], [])
                if ks:
                    ax.plot(ks, ys, marker="o", color=colors[c % len(colors)], label=label)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{bench}: {name}@k")
            ax.set_xlabel("k (samples)")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bar_plot(values: dict[str, dict[str, tuple[float, float, float]]], title: str, path: str | Path,
             ylabel: str = "accuracy") -> None:
    """Grouped bars with error bars: values[group][label] = (mean, lo, hi); lo == hi draws no bar."""
    groups = list(values)
    labels = list(dict.fromkeys(lab for g in values.values() for lab in g))  # first-seen order
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(groups) * max(len(labels), 1) / 2), 3.8))
    width = 0.8 / max(len(labels), 1)
    for j, lab in enumerate(labels):
        xs = [i + j * width for i in range(len(groups))]
        means = [values[g].get(lab, (0, 0, 0))[0] for g in groups]
        err = [[m - values[g].get(lab, (0, 0, 0))[1] for g, m in zip(groups, means)],
               [values[g].get(lab, (0, 0, 0))[2] - m for g, m in zip(groups, means)]]
        ax.bar(xs, means, width, yerr=err if any(map(any, err)) else None, capsize=3, label=lab)
    ax.set_xticks([i + width * (len(labels) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def histogram(series: dict[str, list[float]], title: str, xlabel: str, path: str | Path, bins: int = 20) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, xs in series.items():
        ax.hist(xs, bins=bins, range=(0, 1), alpha=0.6, label=label, density=True)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def distance_plot(layers: dict[int, dict[str, float]], path: str | Path) -> None:
    """Base↔instruct distance per layer: relative Frobenius ‖W_I − W_B‖/‖W_B‖ and Shadow-FT's σ, one line each."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    xs = list(layers)
    ax.plot(xs, [layers[x]["relative"] for x in xs], marker="o", label="‖W_I − W_B‖ / ‖W_B‖")
    ax.plot(xs, [layers[x]["sigma"] for x in xs], marker="s", linestyle="--", label="σ = Σ|W_I − W_B| / (Σ|W_I| + Σ|W_B|)")
    ax.set_xlabel("layer")
    ax.set_ylabel("distance")
    ax.set_title("base ↔ instruct weight distance per layer")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def frontier_plot(points: dict[str, list[tuple[float, float, float]]], floors: list[float], path: str | Path,
                  title: str = "trade-off over the merge scale λ (markers labelled with λ)") -> None:
    """WiSE-FT's figure: x = task, y = retention (both in %), a line per method through its merge scales λ (each
    marker labelled), all starting at the untouched instruct model (λ = 0); dotted lines at the retention floors
    (`floors`, in points below instruct)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    start = next(iter(points.values()))[0]
    for c, (method, pts) in enumerate(points.items()):
        xs, ys = [100 * p[1] for p in pts], [100 * p[2] for p in pts]
        ax.plot(xs, ys, marker="o", color=colors[c % len(colors)], label=method)
        for (lam, _, _), x, y in zip(pts[1:], xs[1:], ys[1:]):
            ax.annotate(f"{lam:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7,
                        color=colors[c % len(colors)])
    ax.scatter([100 * start[1]], [100 * start[2]], s=90, color="black", zorder=5, label="instruct (λ = 0)")
    for floor in floors:
        ax.axhline(100 * start[2] - floor, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"instruct − {floor:g}", (ax.get_xlim()[0], 100 * start[2] - floor), fontsize=7, color="grey",
                    xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("task accuracy (%)")
    ax.set_ylabel("retention (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
