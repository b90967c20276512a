"""What the benchmarks share: device name, timing, XLA's memory plan, and the real train step's
random inputs, state, FLOP count and device peak."""
import time

import jax
import numpy as np

from configs import base
from hvl_jax.common import sharding
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets
from hvl_jax.models import hvl
from hvl_jax.training import optim
from hvl_jax.training import trainer


def device_name() -> str:
  d = jax.devices()[0]
  return f'{d.platform}:{getattr(d, "device_kind", "?")} x{jax.device_count()}'


def time_fn(fn, *args, warmup: int = 2, iters: int = 10) -> float:
  """Median wall time (s) of a jitted `fn(*args)` after warm-up."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def compiled_memory_bytes(fn, *args) -> int:
  """Peak device memory XLA plans for one call of `fn(*args)` (see `planned_bytes`)."""
  return planned_bytes(jax.jit(fn).lower(*args).compile())


def planned_bytes(compiled) -> int:
  """Arguments + outputs + temporaries - aliased of a compiled function (-1 where not reported)."""
  m = compiled.memory_analysis()
  if m is None:
    return -1
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def gib(n: int) -> str:
  return f'{n / 2**30:.2f} GiB' if n >= 0 else 'n/a'


# bf16 dense tensor-core peaks (FLOP/s).
PEAK_FLOPS = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}


def peak_flops() -> float:
  kind = getattr(jax.devices()[0], 'device_kind', '')
  for name, peak in PEAK_FLOPS.items():
    if name in kind:
      return peak * jax.device_count()
  return float('nan')


def random_batch(config, rng: np.random.Generator):
  """One micro-batch (global) of uint8 images and blob labels of the configured shapes, as the
  input pipeline ships it (strong views only with data.strong_view.where='host')."""
  d, accum = config.data, config.train.grad_accum
  s, bl, bu = d.crop_size, d.labeled_batch // accum, d.unlabeled_batch // accum
  labels = np.zeros((bl, s, s), np.int32)
  for i in range(bl):
    for _ in range(3):
      y, x, h, w = rng.integers(0, s // 2, 4)
      labels[i, y:y + h + 8, x:x + w + 8] = rng.integers(1, d.num_classes)
  batch = dict(image_l=rng.integers(0, 255, (bl, s, s, 3), np.uint8), label_l=labels)
  if bu:
    batch.update(image_w=rng.integers(0, 255, (bu, s, s, 3), np.uint8), valid_u=np.ones((bu, s, s),
                                                                                        bool))
  if bu and d.strong_view.where == 'host':
    for k in ('image_s1', 'image_s2'):
      batch[k] = rng.integers(0, 255, (bu, s, s, 3), np.uint8)
    box = np.zeros((bu, s, s), bool)
    box[:, s // 4:s // 2, s // 4:3 * s // 4] = True
    batch.update(box1=box, box2=~box)
  return batch


def benchmark_config(config, grad_accum: int = 0):
  """`config` with a random CLIP of the named sizes instead of the pretrained one (no download)
  and `train.grad_accum` set (0: kept)."""
  with config.unlocked():
    config.model.clip.pretrained = ''
    if grad_accum:
      config.train.grad_accum = grad_accum
  return config


def optimizer(config, params):
  """The config's optimizer; the schedule's length (1000 steps) does not change the step's cost."""
  return optim.make_optimizer(config, params, 1000)


def build_state(config):
  """(model, clip, class names, fresh train state on the host CPU) for a benchmark config."""
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  state = state_lib.create_state(config, model, clip, lambda p: optimizer(config, p),
                                 config.data.crop_size)
  return model, clip, names, state


def shaped(tree, shardings):
  """ShapeDtypeStructs of `tree`'s leaves with `shardings` (what lowering a jitted function
  takes)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      shardings)


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
  unrolled.model.compute.scan = False
  if not recompute:
    base.set_remat(unrolled, 'none')
  with sharding.on_host_cpu():   # also selects XLA attention, which a CPU lowering needs
    mesh = sharding.make_mesh(jax.local_devices(backend='cpu')[:1])
    state_sh = sharding.replicated(mesh, state)
    batch_sh = jax.tree.map(lambda _: sharding.batch_sharding(mesh), batch)
    model, _ = hvl.build_model(unrolled, names, clip)
    # t^CLIP is computed once per start, outside the step, as training does; its values do not
    # change the count.
    t_clip = np.zeros((model.cfg.num_classes, model.cfg.clip.projection_dim), np.float32)
    step = trainer.jit_train_step(unrolled, model, tx, mesh, state_sh, t_clip=t_clip)
    cost = step.lower(shaped(state, state_sh), shaped(batch, batch_sh)).cost_analysis() or {}
  return float(cost.get('flops', float('nan')))
