"""Benchmark helpers: the profile summary attributes device time to the network's components,
the train step's FLOP count covers at least the backbone passes and the recomputation, and the
criterion benchmark counts the mask pairs over its budgets."""
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import harness, profile_summary
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets
from hvl_jax.models import hvl
from hvl_jax.training import optim
from tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(256, name='backbone')(x)
    return nn.Dense(256, name='decoder')(jnp.tanh(x))


def test_profile_summary_by_component(tmp_path):
  net = Net()
  params = net.init(jax.random.PRNGKey(0), jnp.ones((1, 256)))
  step = jax.jit(jax.grad(lambda p, x: jnp.sum(net.apply(p, x) ** 2)))
  x = jnp.ones((512, 256))
  compiled = step.lower(params, x).compile()
  jax.block_until_ready(step(params, x))
  with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
    jax.block_until_ready(step(params, x))
  paths = profile_summary.op_paths(compiled.as_text())
  assert any('/backbone/' in p for p in paths.values()) and any(
      '/decoder/' in p for p in paths.values())
  text = profile_summary.summarize(str(tmp_path), compiled.as_text(), steps=1)
  lines = {
      l.split('  ')[1].strip(): l
      for l in text.splitlines()[1:]
      if l.startswith('  ') and ' ms ' in l and '%' in l
  }
  assert 'backbone E_I' in lines and 'DQTD' in lines, text
  assert '(backward' in lines['backbone E_I']


@pytest.mark.slow
def test_unrolled_flops_cover_the_backbone_passes_and_recomputation():
  # Lower bounds, counted by hand at 2 FLOPs per weight per token: every image of the micro-batch
  # goes at least once forward through the vision tower, and with the backbone rematerialised
  # the labeled images' forward pass runs again in the backward pass.
  config = tiny_config(**{'model.backbone_remat': 'nothing_saveable'})
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  tx_fn = lambda p: optim.make_optimizer(config, p, 10)
  state = state_lib.create_state(config, model, clip, tx_fn, config.data.crop_size)
  batch = harness.random_batch(config, np.random.default_rng(0))
  flops = lambda c, recompute=True: harness.unrolled_flops(c, clip, names, tx_fn(state.params),
                                                           state, batch, recompute)
  model_flops, executed = flops(config, recompute=False), flops(config)
  tokens = (config.data.crop_size // config.model.clip.patch_size) ** 2 + 1
  weights = sum(x.size for x in jax.tree.leaves(state.params['backbone']) if x.ndim == 2)
  images = config.data.labeled_batch + config.data.unlabeled_batch
  assert np.isfinite(model_flops) and model_flops > 2 * weights * tokens * images, (model_flops,
                                                                                    weights, tokens)
  assert executed - model_flops > 2 * weights * tokens * config.data.labeled_batch, (executed,
                                                                                     model_flops)
  # Keeping the matmul outputs leaves only the cheaper element-wise work to recompute.
  dots = config.copy_and_resolve_references()
  dots.model.backbone_remat = 'dots_with_no_batch_dims_saveable'
  assert model_flops < flops(dots) < executed - 2 * weights * tokens * config.data.labeled_batch


def test_step_variants_override_typed_fields_and_name_bad_ones():
  from benchmarks import train_step   # defines the benchmark's flags: only this test needs them
  config = tiny_config(**{'model.decoder.remat': 'nothing_saveable'})
  (base_name, base), (name, fast) = train_step.variants(config, [
      'fast:model.decoder.remat=none,train.grad_accum=2,'
      'model.compute.attention_impl=cudnn,optim.lr=5e-4'])
  assert (base_name, name) == ('base', 'fast')
  assert fast.model.decoder.remat == 'none' and fast.train.grad_accum == 2
  assert fast.model.compute.attention_impl == 'cudnn' and fast.optim.lr == 5e-4
  assert base is config and config.model.decoder.remat == 'nothing_saveable'
  assert config.model.compute.attention_impl == 'auto'
  for spec, message in [('x:model.nope=1', "no field 'model.nope'"),
                        ('x:model.compute.scan=maybe', "model.compute.scan: 'maybe' does not fit"),
                        ('x:train.grad_accum=two', "train.grad_accum: 'two' does not fit"),
                        ('x:model.out_layers=1', 'model.out_layers: 1 does not fit'),
                        ('x:model.decoder.remat', 'is not FIELD=VALUE'),
                        ('model.decoder.remat=none', 'expected NAME:FIELD=VALUE'),
                        ('base:model.decoder.remat=none', 'names must differ')]:
    with pytest.raises(ValueError, match=re.escape(message)):
      train_step.variants(config, [spec])


@pytest.mark.slow
def test_criterion_benchmark_counts_the_pairs_over_the_budget():
  # Demo config: 5 classes, 3 levels, 8 instance queries, 4 labeled images in groups of 2.
  # An image holding all 5 classes has 3 * 5 fixed + 5 Hungarian = 20 matched pairs.
  out = subprocess.run([sys.executable, '-m', 'benchmarks.criterion', '--config', 'configs/demo.py',
                        '--max_masks', '16,20', '--classes', '5', '--iters', '1'],
                       capture_output=True, text=True, check=True, cwd=ROOT).stdout
  dropped = [int(x) for x in re.findall(r'pairs dropped (\d+)', out)]
  per_group = 2 * 20
  assert dropped == [2 * max(per_group - 2 * m, 0) for m in (16, 20)] == [16, 0], out
