#!/usr/bin/env bash
# The device benchmarks, for a lent GPU: deformable attention, the full VOC train step (8+8 images
# in two micro-steps of 4+4, i.e. the per-device load of the paper's 2-GPU setting), the
# EVA02-CLIP-L step (micro-steps of 2+2), a profile of the VOC step per network component, and
# variants of the VOC step timed beside the default in one process (`benchmarks.train_step --variant`):
# cuDNN for every attention, the DQTD's masked one included (cudnn); the backbone's
# rematerialised blocks keeping their matmul outputs (dots); 8+8 images in one micro-step, as one
# H100/H200 holds them (accum1); and the criterion of a VOC micro-step at the old and the new mask
# budget (criterion); the step with the strong views made on the host instead of in the step,
# beside the default in one process (feed); and the step started twice on one persistent
# compilation cache, the second start loading what the first compiled (cache).
# Each stage runs inside what is left of BUDGET_S seconds (default 570). On an H200 deform, voc, eva
# and profile took about 45, 200, 170 and 180 s; STAGES picks some (default: those four), to split
# them over calls of a 10-minute window; variants (about 530 s: 100 s of compile a variant) needs a
# call of its own; criterion (not yet run on a GPU) should take well under a minute; feed (about
# 250 s) and cache (about 300 s: two starts, the first compiling) are not yet run on a GPU either.
# Packages the device image lacks travel as wheels in .whl/ (see README, "Benchmarks").
# Usage (repo root): OUT=/some/dir [STAGES="deform voc eva profile variants criterion feed cache"] bash benchmarks/gpu_suite.sh
set -uo pipefail
OUT=${OUT:-/tmp/hvl_bench}
STAGES=${STAGES:-deform voc eva profile}
END=$(( $(date +%s) + ${BUDGET_S:-570} ))
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
# cuBLAS for every matmul: Triton GEMM fusions are autotuned at compile time, which the step's
# compile time could not afford (the step compiled in 105 s on an H200 with this flag).
FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_triton_gemm=false"
XLA_FLAGS=$FLAGS python3 -c 'import jax.numpy as j; j.zeros(1).block_until_ready()' >/dev/null 2>&1 && export XLA_FLAGS=$FLAGS
echo "XLA_FLAGS=${XLA_FLAGS:-}" | tee "$OUT/xla_flags.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/device.txt"

quiet() { grep -v '^[IW][0-9]' ; }
# stage NAME CAP_S COMMAND...: runs COMMAND (output to $OUT/NAME.txt) if NAME is in STAGES.
stage() {
  local name=$1 cap=$2; shift 2
  [[ " $STAGES " == *" $name "* ]] || return 0
  local s=$(( END - $(date +%s) )); (( s > cap )) && s=$cap; (( s < 1 )) && s=1
  echo "== $(date +%T) $name (up to $s s)"
  timeout "$s" "$@" 2>&1 | quiet | tee "$OUT/$name.txt"
}
stage deform 90 python3 -m benchmarks.deform_attn --batch 8
stage criterion 90 python3 -m benchmarks.criterion --config configs/voc_92.py --batch 4 --max_masks 64,32
stage voc 250 python3 -m benchmarks.train_step --config configs/voc_92.py --steps 5 --grad_accum 2
stage variants 560 python3 -m benchmarks.train_step --config configs/voc_92.py --steps 5 --grad_accum 2 \
  --variant cudnn:model.compute.attention_impl=cudnn \
  --variant dots:model.backbone_remat=dots_with_no_batch_dims_saveable \
  --variant accum1:train.grad_accum=1
stage feed 300 python3 -m benchmarks.train_step --config configs/voc_92.py --steps 5 --grad_accum 2 \
  --variant host:data.strong_view.where=host
# JAX reads JAX_COMPILATION_CACHE_DIR itself; "compiled in" of the second start is the load.
for start in first second; do
  JAX_COMPILATION_CACHE_DIR=$OUT/jax_cache stage cache 200 python3 -m benchmarks.train_step \
    --config configs/voc_92.py --steps 2 --grad_accum 2
  [[ " $STAGES " == *" cache "* ]] && cp "$OUT/cache.txt" "$OUT/cache_$start.txt"
done
[[ -d $OUT/jax_cache ]] && du -sh "$OUT/jax_cache" | tee -a "$OUT/cache_second.txt"
stage eva 250 python3 -m benchmarks.train_step --config configs/voc_92.py:eva02l --steps 3 --grad_accum 4
# Kernels inside CUDA graphs (command buffers) carry no op names: the profile runs without them.
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=" \
  stage profile 250 python3 -m benchmarks.train_step --config configs/voc_92.py --steps 3 --grad_accum 2 \
  --profile /tmp/hvl_profile
echo "== $(date +%T) done"
