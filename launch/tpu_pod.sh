#!/usr/bin/env bash
# Every worker of a Cloud TPU VM slice runs the same command, one JAX process per worker;
# jax.distributed.initialize() finds the slice's workers itself (HVL_DISTRIBUTED=1). The workdir
# and data belong in a bucket: the workers share no disk, and a VM's disk goes with the VM.
#   launch/tpu_pod.sh NAME ZONE configs/coco_232.py gs://BUCKET/runs/coco_232 \
#       --config.data.root=gs://BUCKET/coco
# Each worker needs the project at ~/hvl_jax with its venv (docs/training.md, "TPU pods").
set -euo pipefail
name=$1; zone=$2; config=$3; workdir=$4; shift 4
# The compilation cache's directory (e.g. a gs:// one shared by the workers) goes with the command.
cache=${HVL_COMPILATION_CACHE:+HVL_COMPILATION_CACHE=$(printf '%q' "$HVL_COMPILATION_CACHE") }
command="cd ~/hvl_jax && HVL_DISTRIBUTED=1 $cache.venv/bin/python -m hvl_jax.main"
for arg in --config "$config" --workdir "$workdir" "$@"; do
  command+=" $(printf '%q' "$arg")"
done
exec gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$command"
