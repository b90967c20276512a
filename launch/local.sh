#!/usr/bin/env bash
# Single host, all visible GPUs in one process (JAX uses every local device; the batch is
# sharded over them). The recipe is the global batch: on 1 GPU add --config.train.grad_accum=2.
#   launch/local.sh configs/voc_92.py runs/voc_92 --config.data.root=/data/VOC2012
#   CUDA_VISIBLE_DEVICES=0,1 launch/local.sh configs/voc_92.py runs/voc_92 ...   # the paper's 2 GPUs
set -euo pipefail
config=$1; workdir=$2; shift 2
exec python -m hvl_jax.main --config "$config" --workdir "$workdir" "$@"
