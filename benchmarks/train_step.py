r"""Benchmark the real train step on random inputs of the real shapes (no dataset, no download).

  python -m benchmarks.train_step --config configs/voc_92.py [--steps 5] [--grad_accum 2]
  python -m benchmarks.train_step --config configs/demo.py --steps 3      # tiny, for CPU
  python -m benchmarks.train_step --config configs/voc_92.py --grad_accum 2 --flops_only
  python -m benchmarks.train_step --config configs/voc_92.py --grad_accum 2 \
      --variant 'dots:model.backbone_remat=dots_with_no_batch_dims_saveable' \
      --variant 'big:train.grad_accum=1,model.compute.attention_impl=cudnn'
  XLA_FLAGS=--xla_gpu_enable_command_buffer= \
  python -m benchmarks.train_step --config configs/voc_92.py --grad_accum 2 --profile /tmp/prof

Prints step time, images/s, FLOPs per step, achieved TFLOP/s, MFU and HFU against the device's
bf16 dense peak, and memory. FLOPs come from XLA's cost analysis of the step lowered for the host
CPU, not compiled, with its layers unrolled (the GPU plugin has no cost analysis, a compiled GPU
module hides cuBLAS/cuDNN calls, and scanned layers count once): MFU counts the model's FLOPs
(the step lowered without rematerialisation), HFU the FLOPs executed, the forward passes that
rematerialisation repeats included. `--flops_only` prints these two counts and stops.

Each --variant is NAME:FIELD=VALUE[,FIELD=VALUE...] over the config (values as on the command
line); `base` is the config as given. A variant may change anything that keeps the parameters:
rematerialisation and its policy, the attention implementation, gradient accumulation (where
the optimizer state changes structure it is re-initialised). The state is built once; each
variant is then lowered, compiled and run in turn (2 warm-up and --steps timed optimizer steps)
in this process, so timings compare, and its line is printed at once, so a run cut short keeps
what it measured. Compiles run one at a time: on an H200, eight VOC steps compiled concurrently
had not finished after 465 s, where one takes about 100 s. With --profile, one variant is
compiled again without CUDA graphs (whose kernels carry no op names), traced, and its device
time summarised per network component. A pretrained CLIP named in the config is replaced by a
random one of the same sizes.
"""
import time
from typing import Any, List, Tuple

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from benchmarks import profile_summary
from benchmarks.harness import (benchmark_config, build_state, device_name, gib, optimizer,
                                peak_flops, planned_bytes, random_batch, shaped, unrolled_flops)
from configs import base
from hvl_jax.common import sharding
from hvl_jax.models import hvl
from hvl_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')
_STEPS = flags.DEFINE_integer('steps', 5,
                              'Timed optimizer steps per variant (after 2 warm-up steps).')
_ACCUM = flags.DEFINE_integer('grad_accum', 0,
                              'Override train.grad_accum of every variant (0: keep).')
_VARIANTS = flags.DEFINE_multi_string('variant', [],
                                      'NAME:FIELD=VALUE[,FIELD=VALUE...] (repeatable).')
_FLOPS_ONLY = flags.DEFINE_bool('flops_only', False,
                                'Print the FLOPs per step (CPU lowering) and stop.')
_PROFILE = flags.DEFINE_string(
    'profile', '', 'Trace 2 steps of --profile_variant into this directory and '
    'print the device time per network component.')
_PROFILE_VARIANT = flags.DEFINE_string('profile_variant', 'base', 'The variant to profile.')

# Lets a compile's kernels keep their op names in a trace (GPU only; other backends ignore it).
NO_CUDA_GRAPHS = {'xla_gpu_enable_command_buffer': ''}


def variant_config(config, spec: str):
  """(name, copy of `config` with the overrides of a 'NAME:FIELD=VALUE[,FIELD=VALUE...]' spec)."""
  name, sep, overrides = spec.partition(':')
  if not (sep and name and overrides):
    raise ValueError(f'--variant {spec!r}: expected NAME:FIELD=VALUE[,FIELD=VALUE...]')
  values = {}
  for item in overrides.split(','):
    field, sep, text = item.partition('=')
    if not sep:
      raise ValueError(f'--variant {name}: {item!r} is not FIELD=VALUE')
    values[field] = base.parse_value(text)
  try:
    return name, base.with_overrides(config.copy_and_resolve_references(), values)
  except ValueError as e:
    raise ValueError(f'--variant {name}: {e}') from None


def variants(config, specs: List[str]) -> List[Tuple[str, Any]]:
  """[('base', config), (name, config), ...] for the --variant specs; names must differ."""
  out = [('base', config)] + [variant_config(config, s) for s in specs]
  names = [n for n, _ in out]
  if len(set(names)) != len(names):
    raise ValueError(f'variant names must differ (base is the config as given): {names}')
  return out


class Variant:
  """One variant's model, optimizer, state sharding, batch and lowered step."""

  def __init__(self, name, config, clip, names, state, mesh, rng):
    self.name, self.config = name, config
    model, _ = hvl.build_model(config, names, clip)
    self.tx = optimizer(config, state.params)
    self.abstract = state.replace(opt_state=jax.eval_shape(self.tx.init, state.params))
    self.state_sh = sharding.state_sharding(mesh, self.abstract,
                                            config.train.fsdp)  # as training does
    self.batch = sharding.global_batch(mesh, random_batch(config, rng))
    step = trainer.jit_train_step(config, model, self.tx, mesh, self.state_sh,
                                t_clip=trainer.fixed_text_embeddings(model, state))
    self.lowered = step.lower(shaped(self.abstract, self.state_sh), self.batch)

  def adopt(self, state):
    """`state` with this variant's optimizer state structure and shardings."""
    if jax.tree.structure(state.opt_state) != jax.tree.structure(self.abstract.opt_state):
      state = state.replace(opt_state=self.tx.init(state.params))
    return jax.device_put(state, self.state_sh)

  def run(self, compiled, state, steps: int):
    """(state, metrics, seconds per optimizer step) over `steps` steps after 2 warm-up steps."""
    accum = self.config.train.grad_accum
    out = None
    for i in range(steps + 2):
      if i == 2:
        jax.block_until_ready(out)
        t = time.perf_counter()
      for _ in range(accum):
        state, out = compiled(state, self.batch)
    jax.block_until_ready(out)
    return state, out, (time.perf_counter() - t) / steps

  def flops(self, clip, names, recompute: bool) -> float:
    """FLOPs per optimizer step (see `harness.unrolled_flops`)."""
    return unrolled_flops(self.config, clip, names, self.tx, self.abstract, self.batch,
                          recompute) * self.config.train.grad_accum


def describe(config, images: int) -> str:
  d, accum = config.data, config.train.grad_accum
  return (
      f'config {d.name} {d.split} crop {d.crop_size}, {d.labeled_batch}+{d.unlabeled_batch} '
      f'images/step, '
      f'grad_accum {accum} ({d.labeled_batch // accum}+{d.unlabeled_batch // accum} per micro-step '
      f'over '
      f'{jax.device_count()} device(s)), backbone {config.model.backbone}, dtype '
      f'{config.model.compute.dtype}, '
      f'remat {base.remat_summary(config.model)}; {images} images/step')


def main(argv):
  del argv
  config = benchmark_config(_CONFIG.value, _ACCUM.value)
  configs = variants(config, _VARIANTS.value)
  if _PROFILE.value and _PROFILE_VARIANT.value not in dict(configs):
    raise ValueError(
        f'--profile_variant {_PROFILE_VARIANT.value!r} is none of {[n for n, _ in configs]}')
  t0 = time.perf_counter()
  mesh = sharding.make_mesh()
  _, clip, names, state = build_state(config)
  print(f'model and state built in {time.perf_counter() - t0:.1f} s', flush=True)
  rng = np.random.default_rng(0)
  images = config.data.labeled_batch + config.data.unlabeled_batch
  print(f'device {device_name()}; {describe(config, images)}', flush=True)
  runs = {name: Variant(name, c, clip, names, state, mesh, rng) for name, c in configs}
  base_run = runs['base']
  t = time.perf_counter()
  flops, executed = base_run.flops(clip, names,
                                   recompute=False), base_run.flops(clip, names, recompute=True)
  print(
      f'FLOPs/step {flops / 1e12:.2f} TFLOP model ({flops / images / 1e9:.0f} GFLOP/image), '
      f'{executed / 1e12:.2f} TFLOP executed (with recomputation); counted in '
      f'{time.perf_counter() - t:.1f} s',
      flush=True)
  if _FLOPS_ONLY.value:
    return
  compiled, results = {}, {}
  peak = peak_flops()
  for name, v in runs.items():
    t = time.perf_counter()
    try:
      compiled[name] = v.lowered.compile()
    except Exception as e:  # pylint: disable=broad-except
      print(f'{name}: compile failed: {e}',
            flush=True)  # e.g. a shape cuDNN rejects: the rest still run
      continue
    compile_s = time.perf_counter() - t
    state = v.adopt(state)
    state, metrics, step_s = v.run(compiled[name], state, _STEPS.value)
    results[name] = step_s
    print(
        f'{name}: compiled in {compile_s:.1f} s; step {step_s * 1e3:.1f} ms, {images / step_s:.2f} '
        f'images/s, '
        f'loss {float(metrics["total"]):.3f}, XLA plan per micro-step '
        f'{gib(planned_bytes(compiled[name]))}',
        flush=True)
  stats = jax.local_devices()[0].memory_stats() or {}
  print(
      f'peak device memory {gib(stats.get("peak_bytes_in_use", -1))} (allocator, over all variants)'
  )
  if 'base' in results:
    step_s = results['base']
    print(
        f'base: achieved {executed / step_s / 1e12:.1f} TFLOP/s; MFU {flops / step_s / peak:.1%}, '
        f'HFU {executed / step_s / peak:.1%} of {peak / 1e12:.0f} TFLOP/s')
  print(f'{"variant":<14}{"step ms":>9}{"vs base":>9}{"images/s":>10}{"MFU":>7}{"XLA plan":>11}  '
        f'grad_accum, attention, remat')
  for name, step_s in results.items():
    m = runs[name].config
    print(
        f'{name:<14}{step_s * 1e3:>9.1f}{results.get("base", float("nan")) / step_s:>8.2f}x'
        f'{images / step_s:>10.2f}{flops / step_s / peak:>7.1%}'
        f'{gib(planned_bytes(compiled[name])):>11}  '
        f'{m.train.grad_accum}, {m.model.compute.attention_impl}, {base.remat_summary(m.model)}')
  if _PROFILE.value:
    v = runs[_PROFILE_VARIANT.value]
    profiled = v.lowered.compile(NO_CUDA_GRAPHS)
    state = v.adopt(state)
    state, _, _ = v.run(profiled, state, 1)
    with jax.profiler.trace(_PROFILE.value, create_perfetto_trace=True):
      state, _, _ = v.run(profiled, state, 2)
    print(f'profile of {v.name} (without CUDA graphs; 4 steps: 2 warm-up, 2 timed):')
    print(profile_summary.summarize(_PROFILE.value, profiled.as_text(), steps=4), flush=True)


if __name__ == '__main__':
  app.run(main)
