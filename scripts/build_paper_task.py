"""Build the paper-regime task on a bundled pair and measure its gates before any comparison.

    python scripts/build_paper_task.py [--variants near-style near-style-wrong-30 ...] [--ship VARIANT]
    python scripts/build_paper_task.py --sweep [--variants ...]     # every variant on the shipped dev/test split
    python scripts/build_paper_task.py --pair src/gift/assets/tiny2 --recipe configs/tiny2_paper_8steps.yaml \
        --sweep --preconditions --variants small-tally small-near-style --root runs/tiny2-variants-8
    python scripts/build_paper_task.py --pair PAIR --screen --variants small-tally small-retell --root runs/screen

Each variant (gift.tiny.regime.VARIANTS) is written to ROOT/<variant>/data and measured by one gift run per variant
(instruct, Instruct-SFT, Shadow-FT, GIFT; greedy; the demo's training recipe): the four gates come from baseline
figures and the teacher's view of the data, never from GIFT's accuracy. Every variant's figures go to
ROOT/variants.json; --ship copies one variant's data into src/gift/assets/tiny/tasks/paper with a manifest holding
every variant's gate figures.

--sweep is the protocol the fair comparison's variants use: every variant draws only its training rows and takes
the shipped task's dev and test files (one split for all, so a lever is not confounded with its split), the gates
are read on dev, as means over seeds 0-2, and must hold by MARGIN (a point); ROOT defaults to runs/paper-variants.
The old protocol (each variant its own split, gates on test, seed 0, no margin) is what the shipped manifest holds.
On a pair with no shipped task yet, the first variant measured draws the split the others share.

--pair names the pair (default the bundled one; its task goes to PAIR/tasks/paper), --recipe a run config whose
`train:` section is the training recipe of the gate runs (default the demo's: the budget the variant is compared at
is the one to gate it at; --recipe-set grad_accum=4 changes one field of it), --baselines trains no GIFT adapter
(instruct, Instruct-SFT and Shadow-FT on dev, seeds 0-2, and P5: whether the data harms the instruct model at a
budget, read before any GIFT result), --preconditions adds issue 44's P1-P6 (gift.tiny.regime.PRECONDITIONS, thresholds fixed
in docs/experiments.md) to each variant's figures. --screen trains nothing: it writes each variant's training rows
and measures the preconditions that need only the two models and the data (P2, P3, P4: gift check-pair) into
ROOT/screen.json, the cheap first look at a style before its gate runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import yaml

from gift.config import ASSETS, DEMOS
from gift.experiment import run
from gift.preconditions import from_check
from gift.tiny.regime import (
    GATES,
    MARGIN,
    PRECONDITIONS,
    VARIANTS,
    gate_config,
    gate_figures,
    passed,
    preconditions,
    shadow_ft_sizes,
    world_people,
    write_task,
)


def write_variant(name: str, pair: Path, root: Path, shared: Path | None) -> Path:
    """ROOT/<variant>/data: the variant's splits drawn on the pair's world (dev and test from `shared` if given)."""
    people = world_people(pair)
    data = root / name / "data"
    write_task(name, people, data, shared=shared)
    return data


def measure(name: str, pair: Path, root: Path, sweep: bool, recipe: dict, shared: Path | None,
            with_preconditions: bool) -> dict:
    data = write_variant(name, pair, root, shared if sweep else None)
    config = root / name / "gates.yaml"
    split, seeds, margin = ("dev", [0, 1, 2], MARGIN) if sweep else ("test", [0], 0.0)
    config.write_text(yaml.safe_dump(gate_config(pair, data, root / name / "run", recipe, split, seeds)))
    figures = gate_figures(run(config), margin)
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if isinstance(v, float))
          + f"; passed {sum(figures['passed'].values())}/{len(GATES)}", flush=True)
    if with_preconditions:
        figures["preconditions"] = preconditions(pair, data, root / name / "run", seeds)
        met = figures["preconditions"]["met"]
        print(f"{name}: preconditions met {sum(met.values())}/{len(PRECONDITIONS)} "
              f"({', '.join(p for p, ok in met.items() if not ok) or 'all'} {'not met' if not all(met.values()) else ''})",
              flush=True)
    return figures


def baselines(name: str, pair: Path, root: Path, recipe: dict, shared: Path | None, seeds: list[int]) -> dict:
    """A look that trains no GIFT adapter: dev accuracy of instruct, Instruct-SFT and Shadow-FT at `recipe` (each
    seed's, greedy), and P5 of each Shadow-FT adapter: whether the data harms the instruct model at a budget, read
    before any GIFT result on the variant."""
    data = write_variant(name, pair, root, shared)
    out = root / name / "baselines"
    config = gate_config(pair, data, out / "run", recipe, "dev", seeds) | {"methods": ["instruct", "instruct-sft",
                                                                                        "shadow-ft"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    res = run(out / "config.yaml")["methods"]
    return {"recipe": recipe, **{m: r["task"]["accuracy"]["seeds"] for m, r in res.items()},
            "P5": shadow_ft_sizes(pair, out / "run", seeds)}


def screen(name: str, pair: Path, root: Path, shared: Path | None) -> dict:
    """P2, P3 (every reversal and the runaways) and P4 of a variant's training rows, from check-pair alone."""
    from gift.config import CheckConfig
    from gift.diagnose import check_pair

    data = write_variant(name, pair, root, shared)
    pre = check_pair(CheckConfig(base=str(pair / "base"), instruct=str(pair / "instruct"),
                                 data=str(data / "train.jsonl"), max_length=256), quiet=True)
    return from_check(pre["data_figures"]["preconditions"])


def screen_table(screened: dict) -> str:
    """Markdown: the screened preconditions of each variant (✓/✗ by gift.tiny.regime.PRECONDITIONS)."""
    lines = ["| variant | P2 | P3 runaway (every reversal) | P4 uniform / GIFT |", "|---|---|---|---|"]
    for name, f in screened.items():
        ok = {p: "✓" if PRECONDITIONS[p][0](f) else "✗" for p in ("P2", "P3", "P4")}
        lines.append(f"| {name} | {f['P2']:.1%} {ok['P2']} | {f['P3_runaway']} ({f['P3']}) {ok['P3']} "
                     f"| {f['P4']['uniform']:.1%} / {f['P4']['gift']:.1%} {ok['P4']} |")
    return "\n".join(lines)


def table(summary: dict) -> str:
    """Markdown: every variant measured, with its gate figures (RESULTS.md's table)."""
    lines = ["| variant | style, slip, wrong share, one-step share train/test, misread | instruct | Instruct-SFT "
             "| Shadow-FT | low-q loss share: Shadow-FT / GIFT | gates met | (GIFT) |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in summary.items():
        v, g = entry["variant"], entry["gates"]
        style = v.get("style", "restate" if v.get("restate", True) else "plain")
        train_one = v.get("train_one_step") if v.get("train_one_step") is not None else v["one_step"]
        mark = ["✓" if ok else "✗" for ok in g["passed"].values()]  # in GATES' order
        lines.append(
            f"| {name} | {style}, {v.get('slip', 'last')}, {v['wrong']:.0%}, {train_one:.0%}/{v['one_step']:.0%}, "
            f"{v.get('misread', 0):.0%} "
            f"| {g['instruct']:.1%} {mark[0]} "
            f"| {g['instruct-sft']:.1%} ({100 * (g['instruct-sft'] - g['instruct']):+.1f}) {mark[1]} "
            f"| {g['shadow-ft']:.1%} ({100 * (g['shadow-ft'] - g['instruct']):+.1f}) "
            f"{mark[2]} | {g['shadow-ft_low_q_loss']:.1%} / {g['gift_low_q_loss']:.1%} "
            f"{mark[3]} | {sum(g['passed'].values())} of {len(GATES)} "
            f"| {g['gift']:.1%} |")
    return "\n".join(lines)


def preconditions_table(summary: dict) -> str:
    """Markdown: P1-P6 of every variant measured with --preconditions (✓/✗ by gift.tiny.regime.PRECONDITIONS)."""
    lines = ["| variant | P1 failures, median q, share < 0.1 | P2 | P3 runaway (every reversal) | P4 uniform / GIFT "
             "| P5 by seed | P6 | met |",
             "|---|---|---|---|---|---|---|---|"]
    for name, entry in summary.items():
        f = entry["gates"].get("preconditions")
        if f is None:
            continue
        ok = {p: "✓" if m else "✗" for p, m in f["met"].items()}
        p1 = f["P1"]
        p1_text = (f"{p1['failures']}/{p1['rows']}, {p1['median']:.3f}, {p1['below']:.0%}" if p1["failures"]
                   else f"0/{p1['rows']}")
        lines.append(f"| {name} | {p1_text} {ok['P1']} | {f['P2']:.1%} {ok['P2']} "
                     f"| {f['P3_runaway']} ({f['P3']}) {ok['P3']} "
                     f"| {f['P4']['uniform']:.1%} / {f['P4']['gift']:.1%} {ok['P4']} "
                     f"| {', '.join(f'{v:.3f}' for v in f['P5'])} {ok['P5']} | {f['P6']:.0%} {ok['P6']} "
                     f"| {sum(f['met'].values())} of {len(f['met'])} |")
    return "\n".join(lines)


def compare_commands(summary: dict, root: Path) -> str:
    """The fair comparison for each variant meeting three or more gates on dev: the shipped config's protocol on
    the variant's training rows (dev and test are the shipped files already), 5 seeds."""
    lines = ["# the comparisons of the variants meeting 3+ gates on dev (RESULTS.md: the variants to compare)"]
    for name, entry in summary.items():
        if sum(entry["gates"]["passed"].values()) >= 3:
            lines.append(f"gift run configs/tiny_paper.yaml --train-data {root / name / 'data' / 'train.jsonl'} "
                         f"--seeds 0 1 2 3 4 --out runs/paper-{name}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                    help="variants to measure (each is measured again; none: only --ship and the table)")
    ap.add_argument("--root", help="where variants and variants.json go (default: runs/paper-task, with --sweep "
                                   "runs/paper-variants)")
    ap.add_argument("--sweep", action="store_true", help="the shipped dev/test split for every variant, gates on dev, "
                                                         "seeds 0-2, a margin")
    ap.add_argument("--ship", choices=list(VARIANTS), help="copy this variant's data into the package")
    ap.add_argument("--pair", default=str(ASSETS / "tiny"), help="the pair directory (default the bundled pair)")
    ap.add_argument("--recipe", help="a run config whose train: section the gate runs use (default the demo's)")
    ap.add_argument("--recipe-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field of the recipe's train: section (repeatable), e.g. grad_accum=4")
    ap.add_argument("--preconditions", action="store_true", help="measure issue 44's P1-P6 for each variant")
    ap.add_argument("--baselines", action="store_true", help="train no GIFT adapter: dev accuracy of instruct, "
                    "Instruct-SFT and Shadow-FT (seeds 0-2) and P5, into ROOT/baselines.json")
    ap.add_argument("--screen", action="store_true", help="train nothing: P2-P4 of each variant's rows (check-pair)")
    args = ap.parse_args()
    pair = Path(args.pair)
    shipped = pair / "tasks" / "paper"
    recipe = yaml.safe_load(Path(args.recipe).read_text() if args.recipe else DEMOS["math"].read_text())["train"]
    for setting in args.recipe_set:
        key, sep, value = setting.partition("=")
        if not sep or key not in recipe:
            raise SystemExit(f"--recipe-set {setting}: the recipe has no field {key!r} (it has {', '.join(recipe)})")
        recipe[key] = yaml.safe_load(value)
    if args.sweep and args.ship and shipped.is_dir():
        raise SystemExit("--ship takes a variant of the old protocol (its own split); --sweep variants share the "
                         "shipped split already")
    root = Path(args.root or ("runs/paper-variants" if args.sweep else "runs/paper-task"))

    def shared_split(measured: dict) -> Path | None:  # the shipped task's, else the first variant measured here
        return shipped if shipped.is_dir() else next((root / v / "data" for v in measured), None)

    if args.screen:
        path = root / "screen.json"
        screened = json.loads(path.read_text()) if path.exists() else {}
        for name in args.variants:
            screened[name] = screen(name, pair, root, shared_split(screened))
            path.write_text(json.dumps(screened, indent=2) + "\n")
        print(screen_table(screened))
        return 0
    if args.baselines:
        path = root / "baselines.json"
        looked = json.loads(path.read_text()) if path.exists() else {}
        for name in args.variants:
            looked[name] = baselines(name, pair, root, recipe, shared_split(looked), [0, 1, 2])
            path.write_text(json.dumps(looked, indent=2) + "\n")
            print(f"{name}: " + ", ".join(f"{m} {sum(v) / len(v):.1%}" for m, v in looked[name].items()
                                          if m not in ("recipe", "P5")) + f"; P5 {max(looked[name]['P5']):.3f}",
                  flush=True)
        return 0
    summary_path = root / "variants.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for entry in summary.values():  # every verdict from the figures by today's GATES (and the margin they used)
        entry["gates"]["passed"] = passed(entry["gates"], entry["gates"].get("margin", 0.0))
    for name in args.variants:
        gates = measure(name, pair, root, args.sweep, recipe, shared_split(summary), args.preconditions)
        summary[name] = {"variant": json.loads((root / name / "data" / "variant.json").read_text()), "gates": gates}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    if any("preconditions" in e["gates"] for e in summary.values()):
        print(preconditions_table(summary))
    if args.sweep:
        print(compare_commands(summary, root))
    if args.ship:
        shutil.rmtree(shipped, ignore_errors=True)
        shutil.copytree(root / args.ship / "data", shipped)
        files = sorted(p.name for p in shipped.glob("*.jsonl"))
        manifest = {"shipped": args.ship, "gates": {g: target for g, (_, target) in GATES.items()},
                    "variants": summary, "sha256": {f: hashlib.sha256((shipped / f).read_bytes()).hexdigest()
                                                    for f in files}}
        (shipped / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"shipped {args.ship} -> {shipped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
