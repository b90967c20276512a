#!/usr/bin/env bash
# One process per host; run this on every host with its own process id.
#   launch/multihost.sh COORDINATOR_HOST:PORT NUM_PROCESSES PROCESS_ID configs/coco_232.py runs/coco_232 \
#       --config.data.root=/data/coco
# Every host reads its own slice of the data (grain shards by process); the workdir must be one
# that every host sees, a gs:// bucket or a shared filesystem (Orbax writes one checkpoint from
# all processes). On CPUs the processes' collectives go through JAX's CPU collectives (gloo).
# PYTHON names the interpreter (default: python on PATH, e.g. the activated .venv).
set -euo pipefail
export HVL_COORDINATOR=$1 HVL_NUM_PROCESSES=$2 HVL_PROCESS_ID=$3
config=$4; workdir=$5; shift 5
exec "${PYTHON:-python}" -m hvl_jax.main --config "$config" --workdir "$workdir" "$@"
