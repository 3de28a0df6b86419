#!/usr/bin/env bash
# One-shot GPU readiness check, for the first machine with a CUDA device (under 8 minutes on one H100):
#   1. the test suite's CUDA-marked tests (front end, bf16 models, AMP training, tagging, evaluation);
#   2. benchmarks/gpu_check.py: training clips/s fp32 vs bf16 (and --compile), data wait, peak memory,
#      TFLOP/s vs the card's bf16 matmul; front end clips/s; tagging real-time factor; fp32 vs bf16 eval;
#   3. `torchrun --nproc-per-node 1` training with NCCL.
# On a machine without CUDA it says so and exits 0.
#   bash benchmarks/gpu_check.sh [--compile]      (PYTHON=... to choose the interpreter)
# On the lent GPU machine (no venv, no network): first `bash benchmarks/gpu_wheels.sh` here, then
# carry .whl; this script installs those wheels with --target and runs the package from src/ on
# the machine's own torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ ! -x .venv/bin/python ] && [ -d .whl ]; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device: nothing to check"
  exit 0
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '-', torch.cuda.get_device_name())"
started=$SECONDS

echo "== 1. CUDA tests"
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py

echo "== 2. measurements"
(cd benchmarks && timeout 300 "$PY" gpu_check.py "$@")

echo "== 3. torchrun, 1 process, NCCL"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m audioscene synth --out "$work/train" --n-clips 64 --seed 1 >/dev/null
"$PY" -m audioscene synth --out "$work/eval" --n-clips 24 --seed 2 >/dev/null
NCCL_DEBUG=WARN timeout 120 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m audioscene train \
  --train-data "$work/train" --eval-data "$work/eval" --model-arg width=16 --epochs 1 --batch-size 16 --device cuda \
  --out "$work/run" >/dev/null
test -f "$work/run/epoch_001.pt" && echo "torchrun with NCCL: trained one epoch, checkpoint written"
echo "gpu_check: done in $((SECONDS - started)) s"
