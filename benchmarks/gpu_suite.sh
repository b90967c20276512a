#!/usr/bin/env bash
# The device benchmarks in one go, for a lent GPU: deformable attention, the full VOC train step
# (8+8 images in two micro-steps of 4+4, i.e. the per-device load of the paper's 2-GPU setting,
# with a profile per network component) and the EVA02-CLIP-L step (micro-steps of 2+2).
# Packages the device image lacks travel as wheels in .whl/ (see README, "Benchmarks").
# Usage (repo root): OUT=/some/dir bash benchmarks/gpu_suite.sh
set -uo pipefail
OUT=${OUT:-/tmp/hvl_bench}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
quiet() { grep -v '^[IW][0-9]' ; }
timeout 90 python3 -m benchmarks.deform_attn --batch 8 2>&1 | quiet | tee "$OUT/deform_attn.txt"
timeout ${VOC_S:-240} python3 -m benchmarks.train_step --config configs/voc_92.py --steps 5 --grad_accum 2 \
  --profile /tmp/hvl_profile 2>&1 | quiet | tee "$OUT/train_step_voc.txt"
timeout ${EVA_S:-200} python3 -m benchmarks.train_step --config configs/voc_92_eva02l.py --steps 3 --grad_accum 4 \
  2>&1 | quiet | tee "$OUT/train_step_eva02l.txt"
