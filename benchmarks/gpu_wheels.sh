#!/usr/bin/env bash
# Downloads, here, the wheels the lent GPU machine lacks into .whl/ (git-ignored), for gpu_check.sh.
# That machine's image has Python 3.12 with a CUDA build of torch, numpy, scipy, tqdm, matplotlib,
# tensorboard, onnx, onnxruntime and pytest, but not soundfile (nor its cffi / pycparser), soxr or
# google-crc32c (/work/.library/device/KINDS.md lists its packages). The versions are the ones
# this project is tested with; only manylinux x86-64 CPython 3.12 wheels are fetched.
#   bash benchmarks/gpu_wheels.sh        (then carry .whl to the device; see the README's GPU section)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 google-crc32c==1.9.0)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp ${PLATFORMS[@]/#/--platform })
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
"$PY" -m pip download --quiet --no-deps "${TARGET[@]}" -d .whl "${WHEELS[@]}"
# the install gpu_check.sh does there, into a scratch folder here (pip told the target's Python and platform)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$scratch" "${TARGET[@]}" .whl/*.whl
ls .whl
echo "gpu_wheels: $(ls .whl | wc -l) wheels in .whl ($(du -sh .whl | cut -f1)); they install for CPython 3.12"
