#!/usr/bin/env bash
# The device benchmarks in one go (deformable attention, the full train step), for a lent GPU.
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
timeout 130 python3 -m benchmarks.deform_attn --batch 8 2>&1 | grep -v '^[IW]1' | tee "$OUT/deform_attn.txt"
timeout 300 python3 -m benchmarks.train_step --config configs/voc_92.py --steps 5 --grad_accum 2 2>&1 \
  | grep -v '^[IW]1' | tee "$OUT/train_step.txt"
