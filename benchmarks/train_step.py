r"""Benchmark the real train step on random inputs of the real shapes (no dataset, no download).

  python -m benchmarks.train_step --config configs/voc_92.py [--steps 5] [--grad_accum 2]
  python -m benchmarks.train_step --config configs/demo.py --steps 3      # tiny, for CPU
  XLA_FLAGS=--xla_gpu_enable_command_buffer= \
  python -m benchmarks.train_step --config configs/voc_92.py --grad_accum 2 --profile /tmp/prof

Prints step time, images/s, FLOPs per step (XLA cost analysis of the step lowered for the
host CPU, not compiled, with its layers unrolled: the GPU plugin has no cost analysis, a
compiled GPU module hides cuBLAS/cuDNN calls, and scanned layers count once), achieved
TFLOP/s, MFU and HFU against the device's bf16 dense peak, and peak memory; with --profile,
device time per component (on a GPU without CUDA graphs, whose kernels carry no op names).
MFU counts the model's FLOPs (the step lowered without rematerialisation); HFU the FLOPs
executed, the forward passes that rematerialisation repeats included.
A pretrained CLIP named in the config is replaced by a random one of the same sizes.
"""
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from benchmarks import profile_summary
from benchmarks.common import device_name, gib, planned_bytes
from benchmarks.step_parts import (benchmark_config, build_state, optimizer, peak_flops, random_batch, remat_summary,
                                   unrolled_flops)
from hvl_jax import sharding, train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed optimizer steps (after 2 warm-up steps).')
_ACCUM = flags.DEFINE_integer('grad_accum', 0, 'Override train.grad_accum (0: keep the config).')
_PROFILE = flags.DEFINE_string('profile', '', 'Trace 2 steps with jax.profiler into this directory and '
                               'print the device time per network component.')


def main(argv):
  del argv
  config = benchmark_config(_CONFIG.value, _ACCUM.value)
  accum = config.train.grad_accum
  t0 = time.perf_counter()
  mesh = sharding.make_mesh()
  model, clip, names, state = build_state(config)
  tx = optimizer(config, state.params)
  state_sh = sharding.state_sharding(mesh, state, config.train.fsdp)   # as train.train_and_evaluate
  state = jax.device_put(state, state_sh)
  step_fn = train.jit_train_step(config, model, tx, mesh, state_sh)
  rng = np.random.default_rng(0)
  batch = sharding.global_batch(mesh, random_batch(config, rng))

  print(f'model and state built in {time.perf_counter() - t0:.1f} s', flush=True)
  t = time.perf_counter()
  lowered = step_fn.lower(state, batch)
  print(f'traced and lowered in {time.perf_counter() - t:.1f} s; compiling...', flush=True)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t

  def run(n):
    nonlocal state
    out = None
    for _ in range(n * accum):
      state, out = step_fn(state, batch)
    jax.block_until_ready(out)
    return out

  run(2)
  t = time.perf_counter()
  metrics = run(_STEPS.value)
  step_s = (time.perf_counter() - t) / _STEPS.value
  stats = jax.local_devices()[0].memory_stats() or {}
  peak_mem = stats.get('peak_bytes_in_use', -1)
  print(f'compile {compile_s:.1f} s; step {step_s * 1e3:.1f} ms; peak device memory {gib(peak_mem)}', flush=True)
  if _PROFILE.value:
    with jax.profiler.trace(_PROFILE.value, create_perfetto_trace=True):
      run(2)
    print(profile_summary.summarize(_PROFILE.value, compiled.as_text(), steps=2), flush=True)
  flops = unrolled_flops(config, clip, names, tx, state, batch, recompute=False) * accum
  executed = unrolled_flops(config, clip, names, tx, state, batch) * accum
  images = config.data.labeled_batch + config.data.unlabeled_batch
  peak = peak_flops()
  planned = planned_bytes(compiled)
  print(f'device {device_name()}; config {config.data.name} {config.data.split} crop {config.data.crop_size}, '
        f'{config.data.labeled_batch}+{config.data.unlabeled_batch} images/step, grad_accum {accum} '
        f'({config.data.labeled_batch // accum}+{config.data.unlabeled_batch // accum} per micro-step over '
        f'{jax.device_count()} device(s)), backbone {config.model.backbone}, dtype {config.model.dtype}, '
        f'remat {remat_summary(config.model)}')
  print(f'compile {compile_s:.1f} s; step {step_s * 1e3:.1f} ms; {images / step_s:.2f} images/s; '
        f'loss {float(metrics["total"]):.3f}')
  print(f'FLOPs/step {flops / 1e12:.2f} TFLOP model ({flops / images / 1e9:.0f} GFLOP/image), '
        f'{executed / 1e12:.2f} TFLOP executed (with recomputation); achieved {executed / step_s / 1e12:.1f} '
        f'TFLOP/s; MFU {flops / step_s / peak:.1%}, HFU {executed / step_s / peak:.1%} of {peak / 1e12:.0f} TFLOP/s')
  print(f'peak device memory {gib(peak_mem)} (allocator); XLA-planned per micro-step {gib(planned)}')
  print(f'compilations of the step: {step_fn._cache_size()}')  # pylint: disable=protected-access


if __name__ == '__main__':
  app.run(main)
