r"""Variants of the real train step, timed side by side on one device state.

  python -m benchmarks.step_variants --config configs/voc_92.py --grad_accum 2 \
      --variant 'dots:model.remat_policy.backbone=dots_with_no_batch_dims_saveable' \
      --variant 'big:train.grad_accum=1,model.attention_impl=cudnn' [--profile /tmp/prof --profile_variant big]

Each --variant is NAME:FIELD=VALUE[,FIELD=VALUE...] over the config; `base` is the config as
given. A variant may change anything that keeps the parameters: rematerialisation and its policy,
the attention implementation, gradient accumulation (where the optimizer state changes structure
it is re-initialised). The state is built once, for all variants (the same device and process:
timings compare); each variant is then lowered, compiled and run in turn (2 warm-up and --steps
timed optimizer steps), and its line printed at once, so a run cut short keeps what it measured.
Compiles run one at a time: on an H200, eight VOC steps compiled concurrently had not finished
after 465 s, where one takes about 100 s. Prints per variant the step time and its ratio to
`base`, images/s, MFU on the model's FLOPs (counted once, as `benchmarks.train_step` counts
them), and XLA's memory plan per micro-step (arguments + outputs + temporaries; on the GPU it
matched the allocator's peak). With --profile, one variant compiled again without CUDA graphs
(whose kernels carry no op names) is traced and its device time summarised per network component.
"""
import time
from typing import Any, List, Tuple

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from benchmarks import profile_summary
from benchmarks.common import device_name, gib, planned_bytes
from benchmarks.step_parts import (benchmark_config, build_state, optimizer, peak_flops, random_batch, remat_summary,
                                   shaped, unrolled_flops)
from hvl_jax import sharding, train
from hvl_jax.models import hvl

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')
_VARIANTS = flags.DEFINE_multi_string('variant', [], 'NAME:FIELD=VALUE[,FIELD=VALUE...] (repeatable).')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed optimizer steps per variant (after 2 warm-up steps).')
_ACCUM = flags.DEFINE_integer('grad_accum', 0, 'Override train.grad_accum of every variant (0: keep).')
_PROFILE = flags.DEFINE_string('profile', '', 'Trace 2 steps of --profile_variant into this directory.')
_PROFILE_VARIANT = flags.DEFINE_string('profile_variant', 'base', 'The variant to profile.')

# Lets a compile's kernels keep their op names in a trace (GPU only; other backends ignore it).
NO_CUDA_GRAPHS = {'xla_gpu_enable_command_buffer': ''}


def parse_value(old: Any, text: str, field: str) -> Any:
  """`text` as a value of the type of the field's current value `old`."""
  if isinstance(old, bool):
    if text.lower() not in ('true', 'false'):
      raise ValueError(f'{field}: {text!r} is not true or false')
    return text.lower() == 'true'
  if isinstance(old, (int, float, str)):
    try:
      return type(old)(text)
    except ValueError:
      raise ValueError(f'{field}: {text!r} is not a {type(old).__name__}') from None
  raise ValueError(f'{field} holds a {type(old).__name__}, which a variant cannot set')


def variant_config(config, spec: str):
  """(name, copy of `config` with the overrides of a 'NAME:FIELD=VALUE[,FIELD=VALUE...]' spec)."""
  name, sep, overrides = spec.partition(':')
  if not (sep and name and overrides):
    raise ValueError(f'--variant {spec!r}: expected NAME:FIELD=VALUE[,FIELD=VALUE...]')
  out = config.copy_and_resolve_references()
  for item in overrides.split(','):
    field, sep, text = item.partition('=')
    if not sep:
      raise ValueError(f'--variant {name}: {item!r} is not FIELD=VALUE')
    *parents, key = field.split('.')
    node = out
    try:
      for p in parents:
        node = node[p]
      old = node[key]
    except (KeyError, AttributeError, TypeError):
      raise ValueError(f'--variant {name}: the config has no field {field!r}') from None
    node[key] = parse_value(old, text, field)
  return name, out


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
    self.state_sh = sharding.state_sharding(mesh, self.abstract, config.train.fsdp)
    self.batch = sharding.global_batch(mesh, random_batch(config, rng))
    step = train.jit_train_step(config, model, self.tx, mesh, self.state_sh)
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


def main(argv):
  del argv
  config = benchmark_config(_CONFIG.value, _ACCUM.value)
  configs = variants(config, _VARIANTS.value)
  if _PROFILE.value and _PROFILE_VARIANT.value not in dict(configs):
    raise ValueError(f'--profile_variant {_PROFILE_VARIANT.value!r} is none of {[n for n, _ in configs]}')
  t0 = time.perf_counter()
  mesh = sharding.make_mesh()
  _, clip, names, state = build_state(config)
  print(f'model and state built in {time.perf_counter() - t0:.1f} s', flush=True)
  rng = np.random.default_rng(0)
  images = config.data.labeled_batch + config.data.unlabeled_batch
  runs, compiled, results = {}, {}, {}
  for name, c in configs:
    t = time.perf_counter()
    v = runs[name] = Variant(name, c, clip, names, state, mesh, rng)
    try:
      compiled[name] = v.lowered.compile()
    except Exception as e:  # pylint: disable=broad-except
      print(f'{name}: compile failed: {e}', flush=True)   # e.g. a shape cuDNN rejects: the rest still run
      continue
    compile_s = time.perf_counter() - t
    state = v.adopt(state)
    state, metrics, step_s = v.run(compiled[name], state, _STEPS.value)
    results[name] = step_s
    print(f'{name}: lowered and compiled in {compile_s:.1f} s; step {step_s * 1e3:.1f} ms, {images / step_s:.1f} '
          f'images/s, loss {float(metrics["total"]):.3f}, XLA plan {gib(planned_bytes(compiled[name]))}', flush=True)
  flops = unrolled_flops(config, clip, names, runs['base'].tx, runs['base'].abstract, runs['base'].batch,
                         recompute=False) * config.train.grad_accum
  peak, base = peak_flops(), results.get('base', float('nan'))
  print(f'device {device_name()}; config {config.data.name} {config.data.split} crop {config.data.crop_size}, '
        f'{images} images/step, {flops / 1e12:.2f} TFLOP/step (model); peak memory over all variants '
        f'{gib((jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use", -1))} (allocator)')
  print(f'{"variant":<14}{"step ms":>9}{"vs base":>9}{"images/s":>10}{"MFU":>7}{"XLA plan":>11}  '
        f'grad_accum, attention, remat')
  for name, step_s in results.items():
    m = runs[name].config
    print(f'{name:<14}{step_s * 1e3:>9.1f}{base / step_s:>8.2f}x{images / step_s:>10.1f}'
          f'{flops / step_s / peak:>7.1%}{gib(planned_bytes(compiled[name])):>11}  '
          f'{m.train.grad_accum}, {m.model.attention_impl}, {remat_summary(m.model)}')
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
