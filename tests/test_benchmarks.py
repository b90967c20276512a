"""Benchmark helpers: the profile summary attributes device time to the network's components,
and the train step's FLOP count covers at least the backbone passes and the recomputation."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import profile_summary, train_step
from hvl_jax import optim, train
from tiny import tiny_config


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
  assert any('/backbone/' in p for p in paths.values()) and any('/decoder/' in p for p in paths.values())
  text = profile_summary.summarize(str(tmp_path), compiled.as_text(), steps=1)
  lines = {l.split('  ')[1].strip(): l for l in text.splitlines()[1:] if l.startswith('  ') and ' ms ' in l
           and '%' in l}
  assert 'backbone E_I' in lines and 'DQTD' in lines, text
  assert '(backward' in lines['backbone E_I']


def test_unrolled_flops_cover_the_backbone_passes_and_recomputation():
  # Lower bounds, counted by hand at 2 FLOPs per weight per token: every image of the micro-batch
  # goes at least once forward through the vision tower, and with the backbone rematerialised
  # the labeled images' forward pass runs again in the backward pass.
  config = tiny_config(**{'model.remat_backbone': True})
  model, clip, names = train.build(config)
  tx_fn = lambda p: optim.make_optimizer(config, p, 10)
  state = train.create_state(config, model, clip, tx_fn, config.data.crop_size)
  batch = train_step.random_batch(config, np.random.default_rng(0))
  flops = lambda c, recompute=True: train_step.unrolled_flops(c, clip, names, tx_fn(state.params), state, batch,
                                                             recompute)
  model_flops, executed = flops(config, recompute=False), flops(config)
  tokens = (config.data.crop_size // config.model.clip.patch_size) ** 2 + 1
  weights = sum(x.size for x in jax.tree.leaves(state.params['backbone']) if x.ndim == 2)
  images = config.data.labeled_batch + config.data.unlabeled_batch
  assert np.isfinite(model_flops) and model_flops > 2 * weights * tokens * images, (model_flops, weights, tokens)
  assert executed - model_flops > 2 * weights * tokens * config.data.labeled_batch, (executed, model_flops)
  # Keeping the matmul outputs leaves only the cheaper element-wise work to recompute.
  dots = config.copy_and_resolve_references()
  dots.model.remat_policy.backbone = 'dots_with_no_batch_dims_saveable'
  assert model_flops < flops(dots) < executed - 2 * weights * tokens * config.data.labeled_batch
