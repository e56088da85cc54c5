#!/usr/bin/env bash
# The one-shot GPU check, for a machine with PyTorch but no DVC and no network. Run it in a throwaway copy of the
# working tree with data/raw (the verified idx files) carried along:
#
#   OUT=/some/dir bash tools/gpu_check.sh [--cpu-dry-run] [OUT_DIR]
#
# 1. fails fast unless torch.cuda.is_available() (--cpu-dry-run or GPU_CHECK_CPU_DRY_RUN=1: run on the CPU
#    instead, with the benchmark's --tiny sizes unless BENCH_ARGS says otherwise);
# 2. sets the device key of params.yaml (runtime.device, or train.device in params without a runtime section)
#    to cuda, restored when the script ends;
# 3. runs every stage of dvc.yaml and pipeline/*/dvc.yaml (download skipped when data/raw is there), one process
#    per stage as dvc repro would, timed per stage: process wall, the stage's own work (timings/), start-up
#    (tools/run_stages.py). Without DVC here, the stages come from PLAN, a file that
#    `python tools/run_stages.py --write-plan FILE` wrote where DVC is (a path from the repository root);
# 4. runs the benchmark bench/bench.py with what is left of the budget;
# 5. leaves in OUT: env.txt, pipeline-times.txt, results-<device>.md, study.tgz (what this run wrote to metrics/,
#    plots/study/, plots/figures/, report.md, timings/, and the params.yaml it ran with), log.txt (everything).
#
# Every step is time-guarded: whatever would run past BUDGET_S is skipped or stopped with a message, and what was
# done is still in OUT. Outputs of the stages are overwritten as dvc repro would: do not run it in a checkout
# whose results you want to keep.
set -uo pipefail

# Seconds this script may take in all; the device call's timeout_s must be a little larger.
BUDGET_S=${BUDGET_S:-540}
# Worker lanes for the per-run stages (one seed per lane, tools/run_stages.py --lanes). Sequentially the full
# study does not fit: 123 stage processes x ~3 s start-up there (import torch, CUDA initialization, data to the
# GPU) is ~370 s before any work, against ~500 s for the pipeline and the benchmark together. Three lanes (one per
# seed) bring the pipeline to about a third of that plus the aggregate and plots.
LANES=${LANES:-3}
# The pipeline gets at most this much of the budget; the benchmark needs BENCH_MIN_S at least to start.
PIPELINE_S=${PIPELINE_S:-400}
BENCH_MIN_S=${BENCH_MIN_S:-60}
# Kept back at the end for packing study.tgz.
RESERVE_S=${RESERVE_S:-15}
PY=${PYTHON:-python3}

dry=${GPU_CHECK_CPU_DRY_RUN:-0}
out=${OUT:-}
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) dry=1 ;;
    -*) echo "error: unknown option $arg" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
[ -n "$out" ] || { echo "error: set OUT (or pass OUT_DIR): the folder for the results" >&2; exit 2; }
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out" && out=$(cd "$out" && pwd)
work=$(mktemp -d)
cp params.yaml "$work/params.yaml.orig"
trap 'cp "$work/params.yaml.orig" params.yaml; rm -rf "$work"' EXIT
touch "$work/start"
start=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

left() { echo $((BUDGET_S - ($(date +%s) - start))); }
say() { echo "== [$(($(date +%s) - start)) s] $*"; }

check() {
  if [ "$dry" = 1 ]; then
    device=cpu
    BENCH_ARGS=${BENCH_ARGS:---tiny}
    say "CPU dry run: device cpu, benchmark with ${BENCH_ARGS:-full sizes}"
  else
    device=cuda
    BENCH_ARGS=${BENCH_ARGS:-}
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
      echo "error: torch.cuda.is_available() is False here ($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>&1)); nothing was run. For a CPU dry run: --cpu-dry-run or GPU_CHECK_CPU_DRY_RUN=1." >&2
      return 3
    fi
  fi
  # the device key wherever these params keep it (runtime.device, else train.device); restored on exit
  key=$("$PY" -c 'import sys; sys.path.insert(0, "tools"); from pathlib import Path; from run_stages import set_device
print(set_device(Path("params.yaml"), sys.argv[1]))' "$device") || return 2
  say "params.yaml: $key = $device for this run"
}

environment() {
  {
    date -u
    uname -a
    echo "cpus: $(nproc)"
    "$PY" --version
    "$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__, "threads", torch.get_num_threads())'
    "$PY" -c 'import torch; print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'
    if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
    git rev-parse HEAD 2>/dev/null || echo "git: no repository here"
  } >"$out/env.txt" 2>&1
  cat "$out/env.txt"
}

pipeline() {
  local budget skip=() plan=()
  budget=$(($(left) - BENCH_MIN_S - RESERVE_S))
  [ "$budget" -gt "$PIPELINE_S" ] && budget=$PIPELINE_S
  if [ "$budget" -le 0 ]; then
    say "pipeline skipped: only $(left) s left" | tee "$out/pipeline-times.txt"
    return
  fi
  [ -d data/raw/FashionMNIST/raw ] && skip=(--skip download)
  if [ -n "${PLAN:-}" ]; then
    plan=(--plan "$PLAN")
  elif ! "$PY" -c 'import dvc' 2>/dev/null; then
    say "pipeline skipped: no DVC here to read the stages from, and no PLAN (tools/run_stages.py --write-plan)" |
      tee "$out/pipeline-times.txt"
    return
  fi
  say "pipeline: $LANES lane(s), at most $budget s"
  "$PY" tools/run_stages.py "${skip[@]}" "${plan[@]}" --lanes "$LANES" --budget "$budget" --table "$out/pipeline-times.txt"
  say "pipeline exit status $?"
}

benchmark() {
  local budget rc
  budget=$(($(left) - RESERVE_S))
  if [ "$budget" -lt "$BENCH_MIN_S" ]; then
    say "benchmark skipped: $budget s left, it needs $BENCH_MIN_S s"
    return
  fi
  say "benchmark: at most $budget s"
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of words
  timeout --signal=INT --kill-after=10 "$budget" "$PY" bench/bench.py $BENCH_ARGS --out "$out/results-$device.md"
  rc=$?
  [ "$rc" = 124 ] && say "benchmark stopped at its $budget s limit: no results-$device.md"
  say "benchmark exit status $rc"
}

package() {
  local list="$work/files"
  cp params.yaml "$work/params-used.yaml"
  find metrics plots/study plots/figures report.md timings -type f -newer "$work/start" 2>/dev/null | sort >"$list"
  say "study.tgz: $(wc -l <"$list") files written by this run, and params-used.yaml"
  tar czf "$out/study.tgz" -T "$list" -C "$work" params-used.yaml
  if [ "$(stat -c %s "$out/study.tgz")" -gt $((15 * 1024 * 1024)) ]; then
    say "study.tgz over 15 MiB: packed again without plots/figures"
    grep -v '^plots/figures/' "$list" >"$work/small"
    tar czf "$out/study.tgz" -T "$work/small" -C "$work" params-used.yaml
  fi
  ls -l "$out"
}

main() {
  environment
  check || return
  pipeline
  benchmark
  package
  say "done in $(($(date +%s) - start)) s of a $BUDGET_S s budget"
}

main 2>&1 | tee "$out/log.txt"
