"""The tiny-pair build on a miniature config (gates included), the shipped pair against its manifest and gates,
and gift run end to end on the miniature pair (all methods, γ/λ tuning on dev, caching)."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from gift.cli import main
from gift.config import CheckConfig
from gift.diagnose import check_pair
from gift.experiment import Experiment, load_run_config
from gift.model import load_config, model_shape
from gift.plan import lora_parameters
from gift.tiny import model_config, random_model, world
from gift.tiny.build import GATES, TinyConfig, build, forever, init_chat_tokens, pretrain, weight_delta, world_tokenizer
from tests.conftest import check_gate, write_jsonl

MINI = TinyConfig(people=6, vocab_size=400, hidden=32, layers=2, heads=2, intermediate=64, block=32, pretrain_steps=6,
                  pretrain_batch=4, instruct_steps=4, instruct_batch=4, transfer_seeds=2,
                  splits={"math": {"train": 24, "dev": 6, "test": 8}, "knowledge": {"train": 8, "dev": 4, "test": 8},
                          "retention": {"dev": 4, "test": 8}})


@pytest.fixture(scope="module")
def mini_pair(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "tiny"
    return out, build(MINI, out)


def test_build_writes_a_loadable_pair_with_manifest(mini_pair):
    out, manifest = mini_pair
    assert manifest["config"] == dataclasses.asdict(MINI) and manifest["seed"] == 0
    for name, digest in manifest["sha256"].items():
        assert (out / name).is_file() and len(digest) == 64
    base = AutoModelForCausalLM.from_pretrained(out / "base")
    instruct = AutoModelForCausalLM.from_pretrained(out / "instruct")
    assert base.config.to_dict()["hidden_size"] == 32 and type(base) is type(instruct)
    assert any((a != b).any() for a, b in zip(base.parameters(), instruct.parameters()))  # a real post-training delta
    rows = [json.loads(line) for line in (out / "data" / "math_test.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["answer"].endswith(f"So the final answer is {r['reference']}.") for r in rows)
    gates = manifest["gates"]
    assert set(gates["passed"]) == set(GATES) and 0 < gates["weight_delta"]["all"] < 1
    for model in ("base", "instruct", "instruct-sft", "shadow-ft"):
        assert set(gates[model]) >= {"math", "knowledge", "retention", "retention_by_skill"}
    assert set(world.SKILLS) >= set(gates["base"]["plain_layout"]["retention_by_skill"]) != set()
    by_seed = gates["shadow-ft"]["math_by_seed"]
    assert len(by_seed) == 2 and by_seed[0] == gates["shadow-ft"]["math"]
    assert "| closeness |" in (out / "PROVENANCE.md").read_text()


def assert_same_ids(built, directory):
    """AutoTokenizer.from_pretrained(directory) gives exactly the ids of the tokenizer the build used."""
    loaded = AutoTokenizer.from_pretrained(directory)
    rng = random.Random(7)
    ps = world.people(rng, 5)
    texts = [world.pretraining_doc(rng, ps) for _ in range(50)] + ["Zorba bought 17 ünïcode cups!"]
    chat = [{"role": "user", "content": "Reverse the words: cat dog"}, {"role": "assistant", "content": "dog cat"}]
    texts.append(loaded.apply_chat_template(chat, tokenize=False))
    assert loaded.get_vocab() == built.get_vocab() and loaded.chat_template == built.chat_template
    for t in texts:
        ids = loaded(t, add_special_tokens=False)["input_ids"]
        assert ids == built(t, add_special_tokens=False)["input_ids"] and loaded.decode(ids) == t
    assert loaded.convert_ids_to_tokens(loaded.eos_token_id) == "<|im_end|>"


def test_tokenizer_round_trips_exactly(mini_pair):
    out, _ = mini_pair
    built, _, _ = world_tokenizer(MINI)
    for role in ("base", "instruct"):
        assert_same_ids(built, out / role)


def test_bundled_pair_matches_its_manifest():
    from gift.config import ASSETS
    tiny = ASSETS / "tiny"
    manifest = json.loads((tiny / "manifest.json").read_text())
    import hashlib
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((tiny / name).read_bytes()).hexdigest() == digest, name
    assert sum(f.stat().st_size for f in tiny.rglob("*") if f.is_file()) < 20 * 2**20
    built, _, _ = world_tokenizer(TinyConfig(**manifest["config"]))
    for role in ("base", "instruct"):
        assert_same_ids(built, tiny / role)


def shipped_gates() -> dict:
    from gift.config import ASSETS
    return json.loads((ASSETS / "tiny" / "manifest.json").read_text())["gates"]


def test_bundled_pair_weight_delta_is_what_the_manifest_says():
    """The weight delta recomputed from the shipped files equals the manifest's, per family."""
    from gift.config import ASSETS
    base = AutoModelForCausalLM.from_pretrained(ASSETS / "tiny" / "base")
    instruct = AutoModelForCausalLM.from_pretrained(ASSETS / "tiny" / "instruct")
    delta = weight_delta(base, instruct)
    for family, value in shipped_gates()["weight_delta"].items():
        assert delta[family] == pytest.approx(value, abs=1e-4), family


@pytest.mark.parametrize("gate", list(GATES))
def test_bundled_pair_gate(gate):
    """Each gate of a real pair, checked on the manifest's figures."""
    gates = shipped_gates()
    holds, target = GATES[gate]
    check_gate(gate, holds(gates), gates["passed"][gate], target,
               f"weight delta {gates['weight_delta']['all']:.4f}; math instruct {gates['instruct']['math']:.1%}, "
               f"Shadow-FT {gates['shadow-ft']['math']:.1%}, Instruct-SFT {gates['instruct-sft']['math']:.1%}")


def test_cached_pretraining_gives_the_full_build(mini_pair, tmp_path):
    """A build that reuses a cached base writes exactly the files of a build that pretrains; a variant that changes
    only instruction tuning reuses it, one that changes pretraining does not."""
    out, manifest = mini_pair
    cache, quick = tmp_path / "cache", dataclasses.replace(MINI, gates=False)
    first = build(quick, tmp_path / "a", cache=cache)  # pretrains and fills the cache
    again = build(quick, tmp_path / "b", cache=cache)  # loads base and the random stream from it
    tok = world_tokenizer(MINI)[0]
    assert [p.name for p in cache.iterdir()] == [MINI.pretraining_key(tok)]
    for name in ("base/model.safetensors", "instruct/model.safetensors", "data/math_train.jsonl", "world.json"):
        assert first["sha256"][name] == again["sha256"][name] == manifest["sha256"][name], name
    assert first["final_loss"] == again["final_loss"] and first["tokens"] == again["tokens"]
    assert not first["pretraining"]["reused_from_cache"] and again["pretraining"]["reused_from_cache"]
    assert again["pretraining"]["seconds"] == first["pretraining"]["seconds"] >= 0  # the first build's, from the cache
    variant = build(dataclasses.replace(quick, instruct_lr=1e-3), tmp_path / "c", cache=cache)
    assert variant["sha256"]["base/model.safetensors"] == first["sha256"]["base/model.safetensors"]
    assert variant["sha256"]["instruct/model.safetensors"] != first["sha256"]["instruct/model.safetensors"]
    assert dataclasses.replace(quick, pretrain_lr=1e-3).pretraining_key(tok) != MINI.pretraining_key(tok)
    assert dataclasses.replace(quick, instruct_steps=9).pretraining_key(tok) == MINI.pretraining_key(tok)
    other = world_tokenizer(dataclasses.replace(MINI, vocab_size=380))[0]  # another tokenizer: another base
    assert MINI.pretraining_key(other) != MINI.pretraining_key(tok)


def test_chat_tokens_pretraining_never_saw_get_fresh_rows():
    """Pretraining reports the tokens it never saw (the chat markers among them, not the plain layout's); only those
    of the chat template get new rows, distinct and of the trained rows' norm; every other row is untouched."""
    tok, rng, ps = world_tokenizer(MINI)
    config = model_config("llama", len(tok), hidden=32, layers=2, heads=2, intermediate=64, tied=True)
    model = random_model(config, 0)
    docs = forever(lambda: world.pretraining_doc(rng, ps, MINI.two_step_share))
    unseen = set(pretrain(MINI, model, tok, docs, rng, None)["unseen"])
    markers = {tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>")}
    assert markers <= unseen and not unseen & set(tok("Question:\nAnswer:\n", add_special_tokens=False)["input_ids"])
    scaffold = set(tok.apply_chat_template([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
                                           tokenize=True, add_generation_prompt=True, return_dict=False))
    fresh, other_unseen = sorted(scaffold & unseen), sorted(unseen - scaffold)
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        weight[sorted(unseen)] *= 5  # as a tied head's softmax leaves them: far larger than trained rows
    before = weight.detach().clone()
    init_chat_tokens(model, tok, sorted(unseen), seed=0)
    after = model.get_input_embeddings().weight.detach()
    changed = (after != before).any(1).nonzero().flatten().tolist()
    assert changed == fresh and other_unseen and torch.equal(after[other_unseen], before[other_unseen])
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    trained_norm = before[[i for i in range(len(tok)) if i not in unseen]].norm(dim=1).mean()
    assert ((after[fresh].norm(dim=1) / trained_norm - 1).abs() < 0.5).all()
    assert torch.cdist(after[fresh], after[fresh]).add(torch.eye(len(fresh))).min() > 0.1 * trained_norm
    again = random_model(config, 0)
    with torch.no_grad():
        again.get_input_embeddings().weight.copy_(before)
    init_chat_tokens(again, tok, sorted(unseen), seed=0)
    assert torch.equal(again.get_input_embeddings().weight, after)


def test_world_problems_are_consistent():
    rng = random.Random(1)
    ps = world.people(rng, 5)
    for _ in range(200):
        ex = world.math_example(rng, ps)
        assert 0 <= int(ex["reference"]) <= 2 * world.MAX_N
        k = world.knowledge_example(rng, ps)
        assert k["answer"] == f"The answer is {k['reference']}." and f"\n{k['reference']}. " in k["question"]
        assert k["question"].count("\n") == 4  # one line per option, as choice_by_loglik reads them
    for kind in world.SKILLS:
        ex = world.general_skill(rng, kind)
        assert ex["completion"] and world.skill_of(ex["prompt"]) == kind
        assert world.plain(ex) == f"Question:\n{ex['prompt']}\nAnswer:\n{ex['completion']}"
    tok = world_tokenizer(MINI)[0]  # a chat log in the corpus is what the chat template renders, token for token
    ex = world.fact_question(rng, ps)
    chat = tok.apply_chat_template([{"role": "user", "content": ex["prompt"]},
                                    {"role": "assistant", "content": ex["completion"]}], tokenize=False)
    assert tok(world.chat_log(ex))["input_ids"] == tok(chat.removesuffix("\n"))["input_ids"]
    docs = [world.pretraining_doc(rng, ps, 0.02, chat_log_share=0.5) for _ in range(200)]
    logs = [d for d in docs if d.startswith("<|im_start|>user\n")]
    asks = tuple(question.split("{}")[0] for question, _, _ in world.ATTRIBUTES.values())
    assert 60 < len(logs) < 140 and all(d.split("\n")[1].startswith(asks) for d in logs)  # facts, never a skill


def mini_config(out, methods: list[str], test: str = "tiny/data/math_test.jsonl") -> dict:
    return {
        "base": str(out / "base"), "instruct": str(out / "instruct"), "train_data": str(out / "data" / "math_train.jsonl"),
        "methods": methods, "seeds": [0],
        "annotate": {"max_length": 128}, "train": {"rank": 4, "alpha": 8, "max_steps": 2, "batch_size": 4},
        "eval": {"samples": 2, "max_new_tokens": 8, "batch_size": 16},
        "benchmarks": [
            {"name": "math", "file": test, "kind": "math", "answer_field": "reference", "instruction": ""},
            {"name": "retention", "file": "tiny/data/retention_test.jsonl", "kind": "exact", "answer_field": "reference",
             "role": "retention"},
            {"name": "dev", "file": "tiny/data/math_dev.jsonl", "kind": "math", "answer_field": "reference", "role": "dev"},
            {"name": "retention-dev", "file": "tiny/data/retention_dev.jsonl", "kind": "exact",
             "answer_field": "reference", "role": "dev-retention"}],
        "select": {"scales": [0.5, 1.0], "gamma": [1.0, 2.0], "rho_ratio": [0.6], "filter_keep": [0.5],
                   "eaft_alpha": [1.0], "asft_alpha": [0.5]},
    }


def test_gift_run_end_to_end_and_resumes_from_cache(mini_pair, tmp_path, capsys):
    out, _ = mini_pair
    config = mini_config(out, ["base", "instruct", "instruct-sft", "shadow-ft", "gift-baset", "gift", "dft", "rho",
                               "filter", "eaft", "asft"])
    yaml_path = out.parent / "mini.yaml"  # benchmark files are given relative to the YAML
    yaml_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert main(["run", str(yaml_path), "--out", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "change against the untouched instruct model in points with paired 95% intervals" in printed
    assert "Recommendation (chosen on dev, dev retention ≥ " in printed
    for method in ("instruct-sft", "shadow-ft", "gift", "filter", "gift-published"):  # greedy, Avg@k, retention
        assert any(line.split()[:1] == [method] and "math avg@2" in line and "retention" in line
                   for line in printed.splitlines())
    assert "== gift" in printed and "95% CI" not in printed  # per-model tables stay in files
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["methods"]) == set(config["methods"]) | {"gift-published"}
    # instruct-annotated methods whose chosen knob was trained (a method that keeps λ 0 may have none)
    assert "gift-published" in results["signal"] and not set(results["signal"]) & {"gift-baset", "base"}
    for method in results["methods"]:
        assert set(results["methods"][method]) == {"math", "retention"}
    selection = results["selection"]
    transfer = {"instruct-sft", "shadow-ft", "gift-baset", "gift", "dft", "rho", "filter", "eaft", "asft"}
    assert set(selection["methods"]) == transfer
    gift = selection["methods"]["gift"]
    assert [(p.get("gamma"), p["scale"]) for p in gift["points"]] == [(None, 0.0), (1.0, 0.5), (1.0, 1.0), (2.0, 0.5),
                                                                       (2.0, 1.0)]
    assert gift["chosen"]["scale"] in (0.0, 0.5, 1.0) and selection["floor"] == pytest.approx(
        selection["instruct"]["retention"] - 0.02)
    assert (run_dir / "adapters" / "gift-g2-s0").is_dir() and (run_dir / "adapters" / "filter-k0.5-s0").is_dir()
    asft = json.loads((run_dir / "adapters" / "asft-a0.5-s0" / "gift_train.json").read_text())["config"]
    assert asft["method"] == "asft" and asft["asft_alpha"] == 0.5 and (run_dir / "adapters" / "eaft-s0").is_dir()
    filtered = json.loads((run_dir / "adapters" / "filter-k0.5-s0" / "gift_train.json").read_text())
    assert filtered["rows"] == 12 and filtered["filter_threshold"] < 0  # half of the 24 rows, by mean log q
    rec = results["recommendation"]
    assert rec["method"] in transfer | {"instruct"} and set(rec) >= {"method", "gamma", "scale"}
    assert results["points"]["gift-published"] == {"gamma": 1.0, "scale": 1.0}
    paired = results["paired"]["gift"]["instruct"]["math"]
    assert set(paired) == {"accuracy", "avg@2"} and paired["accuracy"]["lo"] <= paired["accuracy"]["value"]
    report = (run_dir / "report.md").read_text()
    for section in ("## Selection on dev", "## Paired differences on test", "## What the scores are made of"):
        assert section in report
    for fig in ("accuracy.png", "scaling.png", "confidence_hist.png", "signal.png", "frontier.png"):
        assert (run_dir / fig).stat().st_size > 1000 and report.count(f"]({fig})") == 1  # each figure shown once
    assert report.index("## Pair check") < report.index("| method |")  # the check opens the report
    checked = json.loads((run_dir / "check" / "check.json").read_text())["data_figures"]
    assert checked["rows"] > 0
    # issue 44's preconditions open the verdict: P2-P4 from the pair check, P5 from seed 0's Shadow-FT adapter
    pre = results["preconditions"]
    assert pre["P2"] == checked["preconditions"]["gift_relearn"] and set(pre["met"]) == {"P2", "P3", "P4", "P5"}
    alone = check_pair(CheckConfig(base=str(out / "base"), instruct=str(out / "instruct"),
                                   adapter=str(run_dir / "adapters" / "shadow-ft-s0")), quiet=True)
    assert pre["P5"] == [alone["adapter"]["delta_over_tuning"]]
    line = next(x for x in printed.splitlines() if x.startswith("Preconditions ("))
    assert printed.index(line) < printed.index("change against the untouched instruct model") and line in report
    # candidates are served: the run writes the shipped model alone (none when it keeps the instruct model)
    merged = sorted(p.name for p in (run_dir / "models").glob("*")) if (run_dir / "models").is_dir() else []
    shipped = results["shipped"]
    assert merged == ([] if rec["method"] == "instruct" else [Path(shipped["path"]).name])
    # --plan counted this run's stages before it ran: the same counts (trainings and test evaluations at most), and
    # LoRA bytes from the model's shape as written
    work = Experiment(load_run_config(yaml_path, {"out": str(run_dir)})).workload()
    adapters = [p for p in (run_dir / "adapters").glob("*") if not p.name.endswith(".partial")]
    evals = [p.name for p in (run_dir / "evals").glob("*")]
    assert work.trainings == len(adapters) and len(merged) <= work.merges == 1  # the shipped model, if any
    assert work.dev_evaluations == sum(e.endswith("-dev") for e in evals)
    assert work.test_evaluations >= sum(not e.endswith("-dev") for e in evals)
    assert work.done["trainings"] == work.trainings and work.done["dev_evaluations"] == work.dev_evaluations
    shape = model_shape(load_config(str(out / "instruct")))
    from safetensors.torch import load_file
    stored = load_file(adapters[0] / "adapter_model.safetensors")
    assert lora_parameters(shape, 4) == sum(t.numel() for t in stored.values())

    stamp = (run_dir / "adapters" / "gift-s0" / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["run", str(yaml_path), "--out", str(run_dir)]) == 0  # everything cached: nothing recomputed
    assert (run_dir / "adapters" / "gift-s0" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "results.json").read_text())["methods"] == results["methods"]

    config["methods"] = ["instruct", "gift"]  # growing and re-evaluating need one trained method (and CI's minutes)
    yaml_path.write_text(yaml.safe_dump(config))
    assert main(["run", str(yaml_path), "--out", str(run_dir), "--seeds", "0", "1"]) == 0  # grows by a seed
    assert (run_dir / "adapters" / "gift-s0" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert (run_dir / "adapters" / "gift-s1").is_dir()
    grown = json.loads((run_dir / "results.json").read_text())
    assert grown["seeds"] == [0, 1] and grown["selection"]["seeds"] == [0, 1]
    dev_eval = json.loads((run_dir / "evals" / "gift-s1-x0.5-dev" / "results.json").read_text())
    assert dev_eval["benchmarks"]["dev"]["samples"] == 1  # selection reads greedy dev accuracy only
    config["eval"]["samples"] = 3  # new eval settings: every evaluation redone, no adapter retrained
    config["train"]["gradient_checkpointing"] = True  # how a step is computed, not what: nothing retrained
    yaml_path.write_text(yaml.safe_dump(config))
    assert main(["run", str(yaml_path), "--out", str(run_dir), "--seeds", "0", "1"]) == 0
    assert (run_dir / "adapters" / "gift-s0" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    benchmarks = json.loads((run_dir / "evals" / "instruct-s0" / "results.json").read_text())["benchmarks"]
    assert benchmarks["math"]["samples"] == 3 and benchmarks["retention"]["samples"] == 1  # tasks are sampled
    capsys.readouterr()
    config["train"]["max_steps"] = 3
    yaml_path.write_text(yaml.safe_dump(config))
    assert main(["run", str(yaml_path), "--out", str(run_dir)]) == 2
    assert "was run with train.max_steps=2, now 3; seeds and methods can be added" in capsys.readouterr().err


def test_selection_never_reads_test(mini_pair, tmp_path):
    """Every test answer corrupted: the test figures change, the selection (every dev figure, every choice and the
    recommendation) does not."""
    out, _ = mini_pair
    rows = [json.loads(line) for line in (out / "data" / "math_test.jsonl").read_text().splitlines()]
    write_jsonl(out / "data" / "math_test_corrupt.jsonl", [{**r, "reference": str(int(r["reference"]) + 1)} for r in rows])
    results = {}
    for name, test in (("clean", "tiny/data/math_test.jsonl"), ("corrupt", "tiny/data/math_test_corrupt.jsonl")):
        yaml_path = out.parent / f"{name}.yaml"
        yaml_path.write_text(yaml.safe_dump(mini_config(out, ["instruct", "shadow-ft", "gift"], test)))
        assert main(["run", str(yaml_path), "--out", str(tmp_path / name)]) == 0
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert results["clean"]["selection"] == results["corrupt"]["selection"]
    graded = {n: [json.loads(line)["reference"] for line in (tmp_path / n / "evals" / "gift-s0" / "samples.jsonl")
                  .read_text().splitlines() if json.loads(line)["benchmark"] == "math"] for n in ("clean", "corrupt")}
    assert graded["corrupt"] == [str(int(r) + 1) for r in graded["clean"]]  # test itself was read corrupted


def small_run(tmp_path, make_pair, arith_jsonl, **extra):
    """An Experiment over a tiny random pair and a copy of the arithmetic data, for checks that train nothing."""
    import shutil

    from gift.experiment import Experiment, load_run_config

    base, instruct = make_pair("llama", True)
    data, bench, kept = tmp_path / "train.jsonl", tmp_path / "dev.jsonl", tmp_path / "kept.jsonl"
    shutil.copy(arith_jsonl, data)
    write_jsonl(bench, [{"question": "What is 1 + 1?", "answer": "2"}])
    write_jsonl(kept, [{"question": "What is 2 + 2?", "answer": "4"}])
    config = {"base": str(base), "instruct": str(instruct), "train_data": str(data), "out": str(tmp_path / "run"),
              "benchmarks": [{"name": "dev", "file": str(bench), "kind": "math", "role": "dev"},
                             {"name": "kept", "file": str(kept), "kind": "math", "role": "dev-retention"}], **extra}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return lambda: Experiment(load_run_config(tmp_path / "run.yaml"))


def test_a_rewritten_input_at_the_same_path_is_refused(tmp_path, make_pair, arith_jsonl):
    """The stages are cached by what they were computed from: data rewritten or a model replaced at the same path
    would otherwise reuse the old annotation, adapters and evaluations."""
    import shutil

    from gift.errors import GiftError

    shutil.copytree(make_pair("llama", True)[1], tmp_path / "instruct")
    experiment = small_run(tmp_path, make_pair, arith_jsonl, instruct=str(tmp_path / "instruct"))
    experiment().check()
    experiment().check()  # unchanged: accepted
    data = tmp_path / "train.jsonl"
    original = data.read_text()
    data.write_text(original.replace("The answer is", "So the answer is", 1))
    with pytest.raises(GiftError, match=r"was run with content\.train_data="):
        experiment().check()
    data.write_text(original)
    weights = tmp_path / "instruct" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(raw))
    with pytest.raises(GiftError, match=r"was run with content\.instruct="):
        experiment().check()
    weights.write_bytes(bytes(raw[:-1] + bytes([raw[-1] ^ 1])))
    experiment().check()
    write_jsonl(tmp_path / "kept.jsonl", [{"question": "What is 2 + 3?", "answer": "5"}])  # a dev-retention file
    with pytest.raises(GiftError, match=r"was run with content\.benchmarks\.kept="):
        experiment().check()


@pytest.mark.parametrize("select, message", [
    ({"scales": [0]}, "needs a merge scale λ above 0"),
    ({"retention_floor": 88}, "for 88% write 0.88"),
    ({"retention_drop": -1}, "in \\[0, 100\\]")])
def test_select_blocks_that_cannot_select_are_refused(tmp_path, make_pair, arith_jsonl, select, message):
    from gift.errors import GiftError

    with pytest.raises(GiftError, match=message):
        small_run(tmp_path, make_pair, arith_jsonl, methods=["instruct", "gift"], select=select)()


def test_run_config_blocks_are_read_not_dropped(tmp_path, make_pair, arith_jsonl):
    from gift.errors import GiftError
    from gift.experiment import load_benchmarks

    experiment = small_run(tmp_path, make_pair, arith_jsonl, eval={"math_instruction": "Think first."})
    assert load_benchmarks(experiment().cfg, {"dev"})[0].problems[0].question.endswith("Think first.")
    with pytest.raises(GiftError, match=r"the run config's `eval:` block: unknown setting 'math_instructions'"):
        small_run(tmp_path, make_pair, arith_jsonl, eval={"math_instructions": "Think."})().check()
    write_jsonl(tmp_path / "qa.jsonl", [{"q": "What is 2 + 2?", "a": "2 + 2 = 4."}])
    renamed = small_run(tmp_path, make_pair, arith_jsonl, annotate={"prompt_field": "q", "response_field": "a"},
                        train_data=str(tmp_path / "qa.jsonl"))
    renamed().check()  # refused before: the data was read without the annotate block's fields


def test_a_dev_benchmark_without_accuracy_is_scored_by_its_headline_metric(tmp_path, make_pair, arith_jsonl,
                                                                           monkeypatch):
    """IFEval as dev has prompt_level_strict_acc, no accuracy: λ is chosen by it (a KeyError before)."""
    from gift.experiment import Experiment

    bench = [{"name": "ifeval", "builtin": "ifeval", "role": "dev"}, {"name": "kept", "builtin": "ifeval",
                                                                      "role": "dev-retention"}]
    experiment = small_run(tmp_path, make_pair, arith_jsonl, methods=["instruct", "shadow-ft"],
                           select={"scales": [0.5, 1.0, 1.5]})()
    experiment.cfg.benchmarks = bench
    followed = {0.0: 0.1, 0.5: 0.2, 1.0: 0.3, 1.5: 0.6}
    monkeypatch.setattr("gift.experiment.load_benchmarks", lambda cfg, roles: [])
    monkeypatch.setattr(Experiment, "evaluation", lambda self, method, seed, benches, knob, scale, tag, greedy: {
        "ifeval": {"metrics": {"prompt_level_strict_acc": {"value": followed[0.0 if method == "instruct" else scale]}}},
        "kept": {"metrics": {"prompt_level_strict_acc": {"value": 0.5}}}})
    assert experiment.select()["methods"]["shadow-ft"]["chosen"] == {"scale": 1.5}


def test_plan_prints_the_cost_and_a_run_over_the_free_disk_is_refused(mini_pair, tmp_path, capsys, monkeypatch):
    out, _ = mini_pair
    yaml_path = out.parent / "plan.yaml"
    yaml_path.write_text(yaml.safe_dump(mini_config(out, ["instruct", "shadow-ft", "gift"])))
    assert main(["run", str(yaml_path), "--out", str(tmp_path / "run"), "--plan", "--preset", "cpu"]) == 0
    printed = capsys.readouterr().out
    # selection: shadow-ft 2 λ, gift 2 γ × 2 λ, + instruct; trainings: shadow-ft 1, gift 2 (γ 1, 2)
    assert "1 annotations, 3 trainings, 7 dev evaluations" in printed and "1 merges" in printed
    assert "Time on cpu" in printed and not (tmp_path / "run").exists()  # nothing computed, nothing written
    assert main(["run", str(yaml_path), "--out", str(tmp_path / "run"), "--plan", "--merge-all"]) == 0
    assert "9 merges" in capsys.readouterr().out  # 6 dev candidates + shadow-ft, gift and gift as published on test
    assert main(["run", str(yaml_path), "--plan", "--throughput", "warp=9"]) == 2
    assert "unknown figure" in capsys.readouterr().err
    monkeypatch.setattr("gift.experiment.free_bytes", lambda path: 1000)
    assert main(["run", str(yaml_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "this run would write about" in err and "1.0 KB are free" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "adapters").exists()


def test_a_run_split_over_shards_does_each_stage_once_and_selects_as_one_run(mini_pair, tmp_path, monkeypatch):
    """Two `--shard` processes at once on one OUT share the selection's trainings and dev evaluations (each stage
    done by one of them); the last run without --shard trains and dev-evaluates nothing and selects as a run that
    was never split."""
    import re
    import subprocess
    import sys

    from gift import experiment
    from gift.experiment import Experiment, load_run_config

    out, _ = mini_pair
    config = mini_config(out, ["instruct", "shadow-ft", "gift"])
    config["select"] = {"scales": [0, 0.5, 1.0], "gamma": [1.0, 2.0]}
    config["seeds"] = [0, 1]
    yaml_path = out.parent / "shard.yaml"
    yaml_path.write_text(yaml.safe_dump(config))
    stages = Experiment(load_run_config(yaml_path, {"out": str(tmp_path / "sharded")})).dev_stages()
    procs = [subprocess.Popen([sys.executable, "-m", "gift.cli", "run", str(yaml_path), "--out", str(tmp_path / "sharded"),
                               "--shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in range(2)]
    done_here = [int(re.search(r"shard \d/2: (\d+) stage", p.communicate(timeout=900)[0]).group(1)) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(done_here) == len(stages) and min(done_here) > 0  # every stage once, both shards worked

    calls: list[str] = []
    real_train, real_eval = experiment.train, experiment.evaluate
    monkeypatch.setattr(experiment, "train", lambda c: calls.append(c.out) or real_train(c))
    monkeypatch.setattr(experiment, "evaluate", lambda c, *a, **k: calls.append(c.out) or real_eval(c, *a, **k))
    assert main(["run", str(yaml_path), "--out", str(tmp_path / "sharded")]) == 0
    assert not [c for c in calls if "adapters" in c or c.endswith("-dev")]  # only test evaluations were left
    assert main(["run", str(yaml_path), "--out", str(tmp_path / "whole")]) == 0
    sharded, whole = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("sharded", "whole"))
    assert sharded["selection"] == whole["selection"]
    assert main(["run", str(yaml_path), "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2
