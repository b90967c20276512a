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
from jax.sharding import Mesh
from ml_collections import config_flags

from benchmarks import profile_summary
from benchmarks.common import device_name, gib
from hvl_jax import optim, sharding, train
from hvl_jax.models import hvl

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed optimizer steps (after 2 warm-up steps).')
_ACCUM = flags.DEFINE_integer('grad_accum', 0, 'Override train.grad_accum (0: keep the config).')
_PROFILE = flags.DEFINE_string('profile', '', 'Trace 2 steps with jax.profiler into this directory and '
                               'print the device time per network component.')

# bf16 dense tensor-core peaks (FLOP/s).
PEAK_FLOPS = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}


def peak_flops() -> float:
  kind = getattr(jax.devices()[0], 'device_kind', '')
  for name, peak in PEAK_FLOPS.items():
    if name in kind:
      return peak * jax.device_count()
  return float('nan')


def random_batch(config, rng: np.random.Generator):
  """One micro-batch (global) of uint8 images and blob labels of the configured shapes."""
  d, accum = config.data, config.train.grad_accum
  s, bl, bu = d.crop_size, d.labeled_batch // accum, d.unlabeled_batch // accum
  labels = np.zeros((bl, s, s), np.int32)
  for i in range(bl):
    for _ in range(3):
      y, x, h, w = rng.integers(0, s // 2, 4)
      labels[i, y:y + h + 8, x:x + w + 8] = rng.integers(1, d.num_classes)
  batch = dict(image_l=rng.integers(0, 255, (bl, s, s, 3), np.uint8), label_l=labels)
  if bu:
    for k in ('image_w', 'image_s1', 'image_s2'):
      batch[k] = rng.integers(0, 255, (bu, s, s, 3), np.uint8)
    box = np.zeros((bu, s, s), bool)
    box[:, s // 4:s // 2, s // 4:3 * s // 4] = True
    batch.update(box1=box, box2=~box, valid_u=np.ones((bu, s, s), bool))
  return batch


def unrolled_flops(config, clip, names, tx, state, batch, recompute: bool = True) -> float:
  """FLOPs of one micro-step from XLA's cost analysis of the step lowered for the host CPU with
  every layer unrolled.

  The analysis counts a scanned layer once, not once per iteration; unrolled, it counts every
  layer, and with `recompute` the forward passes that rematerialisation repeats (the FLOPs
  executed); without it, the step is lowered with rematerialisation off (the model's FLOPs).
  It runs on a CPU lowering because the GPU plugin offers no cost analysis (and would hide
  cuBLAS/cuDNN calls from a compiled one).
  """
  unrolled = config.copy_and_resolve_references()
  unrolled.model.scan_layers = False
  if not recompute:
    unrolled.model.remat_backbone = unrolled.model.remat_pixel_decoder = unrolled.model.remat_decoder = False
  with sharding.on_host_cpu():   # also selects XLA attention, which a CPU lowering needs
    mesh = Mesh(np.asarray(jax.local_devices(backend='cpu')[:1]), ('data',))
    abstract = lambda tree, sh: jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sh)
    state_sh = sharding.replicated(mesh, state)
    batch_sh = jax.tree.map(lambda _: sharding.batch_sharding(mesh), batch)
    model, _ = hvl.build_model(unrolled, names, clip)
    step = train.jit_train_step(unrolled, model, tx, mesh, state_sh)
    cost = step.lower(abstract(state, state_sh), abstract(batch, batch_sh)).cost_analysis() or {}
  return float(cost.get('flops', float('nan')))


def remat_summary(m) -> str:
  """'backbone nothing_saveable, pixel_decoder off, ...': each tower's rematerialisation."""
  return ', '.join(f'{tower} {policy if m[f"remat_{tower}"] else "off"}' for tower, policy in m.remat_policy.items())


def main(argv):
  del argv
  config = _CONFIG.value
  with config.unlocked():
    config.model.clip.pretrained = ''
    if _ACCUM.value:
      config.train.grad_accum = _ACCUM.value
  accum = config.train.grad_accum
  t0 = time.perf_counter()
  mesh = sharding.make_mesh()
  model, clip, names = train.build(config)
  tx_fn = lambda p: optim.make_optimizer(config, p, 1000)
  state = train.create_state(config, model, clip, tx_fn, config.data.crop_size)
  tx = tx_fn(state.params)
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
  mem = compiled.memory_analysis()

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
  planned = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
             - mem.alias_size_in_bytes) if mem is not None else -1
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
