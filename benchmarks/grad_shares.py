r"""Each loss term's share of the gradient before clipping.

  python -m benchmarks.grad_shares --config configs/demo.py [--datasets voc,coco,ade,cityscapes] \
      [--steps 100] [--config.loss.prompt.reduction=sum]
  python -m benchmarks.grad_shares --workdir runs/demo [--batches 8]

At the real class counts (--config): for each dataset, the config's network (a random CLIP of its
sizes) with that dataset's class names (data/splits/classes.json) and background classes, on
random images with blob labels of its K classes (fixed per dataset, drawn from --seed): the global
norm of the gradient of each weighted summand of the loss (`objective.weighted_terms`) and of
their sum, at initialisation and after --steps optimizer steps of the full train step on such
batches.

Along a run (--workdir): the run's own network and data (its config_train.json), at every
checkpoint the workdir keeps, the norms averaged over the first --batches batches of its training
stream (the small world: train with --config.train.ckpt_every=100 to see the shares over time).

Each row prints the terms' norms and their shares (norm / sum of the terms' norms); `clip` is the
factor global-norm clipping at optim.clip_norm applies to the total.
"""
import json
import os

from absl import app
from absl import flags
import jax
import numpy as np
import optax
from ml_collections import config_flags

from benchmarks.harness import benchmark_config, device_name, random_batch
from configs import base
from hvl_jax.common import checkpoint as ckpt_lib
from hvl_jax.common import config_io
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets, pipeline
from hvl_jax.models import hvl
from hvl_jax.training import objective
from hvl_jax.training import optim
from hvl_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/demo.py', 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', '',
                               'A training workdir: measure at each of its checkpoints.')
_BATCHES = flags.DEFINE_integer('batches', 8,
                                'With --workdir: batches of the training stream averaged.')
_DATASETS = flags.DEFINE_list('datasets', ['voc', 'coco', 'ade', 'cityscapes'],
                              'Class sets to measure.')
_STEPS = flags.DEFINE_integer('steps', 100, 'Optimizer steps between the two measurements.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the random batches.')


def class_set(name: str):
  with open(os.path.join(datasets.SHIPPED_SPLITS, 'classes.json')) as f:
    names = tuple(json.load(f)[datasets.spec(name).classes_key])
  return names, base.DATASETS[name]['background_classes']


def term_gradient_norms(model, config, params, frozen, batch, rng):
  """{summand: global norm of its gradient} and the total's, w.r.t. the trainable `params`."""
  inputs = trainer.step_inputs(batch, rng, trainer.strong_view_config(config))

  def parts(p):
    return objective.weighted_terms(model, {**p, **frozen}, inputs, rng,
                                    objective.objective_config(config, model.cfg))[0]

  grads = jax.jacrev(parts)(params)
  norms = {name: optax.tree.norm(g) for name, g in grads.items()}
  norms['TOTAL'] = optax.tree.norm(jax.tree.map(lambda *g: sum(g), *grads.values()))
  return norms


def row(label, norms, clip_norm):
  terms = {k: float(v) for k, v in norms.items() if k != 'TOTAL'}
  total = sum(terms.values())
  shares = ' '.join(f'{k} {v:.3g} ({100 * v / total:.1f}%)' for k, v in terms.items())
  clip = min(1.0, clip_norm / max(float(norms['TOTAL']), 1e-12))
  return f'{label}: |grad total| {float(norms["TOTAL"]):.3g}, clip x{clip:.3g}; {shares}'


def along_run(workdir: str, num_batches: int):
  """Rows for each checkpoint of `workdir`, on its own network and training stream."""
  config = config_io.read(os.path.join(workdir, config_io.TRAINING_CONFIG))
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  sources = datasets.make_sources(config)
  stream = iter(pipeline.train_dataset(config, sources))
  batches = [next(stream) for _ in range(num_batches)]
  shapes = jax.eval_shape(
      lambda: hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size))
  trainable, frozen = state_lib.split_params(shapes, model)
  checkpoints = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  measure = jax.jit(
      lambda p, f, b: term_gradient_norms(model, config, p, f, b, jax.random.PRNGKey(0)))
  print(
      f'{workdir}: {num_batches} batches of its stream, device {device_name()} JAX '
      f'{jax.__version__}',
      flush=True)
  for step in checkpoints.steps():
    parts, _ = checkpoints.restore_parts({'params': trainable, 'frozen': frozen}, step=step)
    norms = [measure(parts['params'], parts['frozen'], b) for b in batches]
    mean = {k: np.mean([float(n[k]) for n in norms]) for k in norms[0]}
    print(row(f'  step {step}', mean, config.optim.clip_norm), flush=True)
  checkpoints.close()


def main(argv):
  del argv
  if _WORKDIR.value:
    along_run(_WORKDIR.value, _BATCHES.value)
    return
  for name in _DATASETS.value:
    config = benchmark_config(_CONFIG.value)
    names, background = class_set(name)
    config.data.num_classes, config.data.background_classes = len(names), background
    model, clip = hvl.build_model(config, names)
    tx_fn = lambda p: optim.make_optimizer(config, p, max(_STEPS.value, 1))
    state = state_lib.create_state(config, model, clip, tx_fn, config.data.crop_size)
    tx = tx_fn(state.params)
    rng = np.random.default_rng(_SEED.value)
    batches = [random_batch(config, rng) for _ in range(4)]
    measure = jax.jit(lambda s, b: term_gradient_norms(model, config, s.params, s.frozen, b,
                                                       jax.random.PRNGKey(0)))
    step = jax.jit(trainer.bind_train_step(config, model, tx))
    print(f'{name} K={len(names)} reduction={config.loss.prompt.reduction} device {device_name()} '
          f'JAX {jax.__version__}', flush=True)
    print(row('  init', measure(state, batches[0]), config.optim.clip_norm), flush=True)
    for i in range(_STEPS.value):
      state, _ = step(state, batches[i % len(batches)])
    print(row(f'  after {_STEPS.value} steps', measure(state, batches[0]), config.optim.clip_norm),
          flush=True)


if __name__ == '__main__':
  app.run(main)
