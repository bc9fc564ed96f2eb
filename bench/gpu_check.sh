#!/usr/bin/env bash
# The device check of served candidates, for a lent GPU machine (the `device` tool): under 10 minutes on the bundled
# pair. Writes every figure to $OUT/gpu_check.json (or bench/results/gpu_check.json off that tool):
#   1. served-adapter evaluation against the merged model on the GPU, HF backend, bf16 and float32 (logit deviation,
#      greedy agreement, scores) at λ 0.25 and 1;
#   2. `gift run` of configs/tiny_paper_8steps.yaml at one seed, served: wall time, bytes written, model loads;
#   3. with vLLM importable (its wheel carried; it is not on the GPU image), the same candidates through one engine.
# Run from the repository root:  bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
python3 -c "import gift" 2>/dev/null || python3 -m pip install -q --no-deps -e . 2>/dev/null || export PYTHONPATH=src
PYTHONUNBUFFERED=1 timeout 540 python3 bench/gpu_check.py --out "$OUT"
