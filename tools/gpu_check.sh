#!/usr/bin/env bash
# The GPU check of issue 4, as one script for a machine with PyTorch but no DVC and no network:
# every stage of dvc.yaml in order (each a separate process, as dvc repro runs them), timed, then
# the benchmark. Carry data/raw (the verified idx files) or set data.mirror to a carried mirror.
# Usage: bash tools/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
skip=()
[ -d data/raw/FashionMNIST/raw ] && skip=(--skip download)
python tools/run_stages.py "${skip[@]}" | tee "$out/pipeline-times.txt"
python bench/bench.py --out "$out/results-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")').md"
