r"""Benchmark: the criterion (matching and mask losses of every decoder stage), forward and
backward, at a config's shapes, for several mask budgets.

  python -m benchmarks.criterion --config configs/voc_92.py --batch 4 --max_masks 64,32
  python -m benchmarks.criterion --config configs/demo.py --iters 2        # tiny, for CPU

Random class and mask logits (the model's dtype) for decoder.layers + 1 stages of Q = levels x
classes + instance queries at the mask resolution (4 x crop / patch), against label maps that hold
--classes classes each (background and square objects, a rim of ignore). For each
`loss.supervised.max_masks`: median time, XLA's FLOPs and bytes accessed (where the backend reports
them), XLA's memory plan, the matched pairs left out of the mask losses, and the time against the
first.
"""
import dataclasses

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from benchmarks.harness import device_name, gib, planned_bytes, time_fn
from hvl_jax.common import config_tree
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.losses import segmentation
from hvl_jax.models import hvl

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')
_BATCH = flags.DEFINE_integer('batch', 0,
                              'Labeled images (0: data.labeled_batch / train.grad_accum).')
_MAX_MASKS = flags.DEFINE_list(
    'max_masks', [], "Budgets to time (loss.supervised.max_masks; default: the config's).")
_CLASSES = flags.DEFINE_integer('classes', 3, 'Classes per label map, background included.')
_ITERS = flags.DEFINE_integer('iters', 10, 'Timed calls per budget (after 2 warm-up calls).')


def label_maps(batch: int, size: int, num_classes: int, classes: int, rng):
  """(batch, size, size) int32: class 0 with `classes` - 1 other classes as squares, 4 rows of
  ignore."""
  if not 1 <= classes <= num_classes:
    raise ValueError(
        f'--classes={classes}: must be between 1 and the {num_classes} classes of the config')
  labels = np.zeros((batch, size, size), np.int32)
  side = size // classes
  for b in range(batch):
    for i, c in enumerate(rng.choice(np.arange(1, num_classes), classes - 1, replace=False)):
      labels[b, size // 2:size // 2 + side, i * side:(i + 1) * side] = c
  labels[:, :4] = IGNORE_INDEX
  return labels


def inputs(config, crit: segmentation.CriterionConfig, batch: int, classes: int, seed: int = 0):
  """Class logits (S, B, Q, K+1), mask logits (S, B, h, w, Q) and labels (B, H, W) of one
  micro-step."""
  m, k = hvl.model_config(config), config.data.num_classes
  rng = np.random.default_rng(seed)
  stages = m.decoder.layers + 1
  queries = crit.num_levels * k + m.decoder.instance_queries
  cells = 4 * config.data.crop_size // m.clip.patch_size
  dtype = jnp.dtype(m.compute.dtype)
  cls = jnp.asarray(rng.standard_normal((stages, batch, queries, k + 1)), dtype)
  masks = jnp.asarray(rng.standard_normal((stages, batch, cells, cells, queries)), dtype)
  labels = label_maps(batch, config.data.crop_size, k, classes, rng)
  return cls, masks, jnp.asarray(labels)


def criterion_grad(crit: segmentation.CriterionConfig):
  """jit of (cls, masks, labels) -> ((L_seg, terms), gradients w.r.t. both logits)."""
  def loss(cls, masks, labels):
    terms = segmentation.set_criterion(list(zip(cls, masks)), labels, crit, jax.random.PRNGKey(0))
    return terms['seg'], terms
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


def main(argv):
  del argv
  config = _CONFIG.value
  batch = _BATCH.value or config.data.labeled_batch // config.train.grad_accum
  budgets = [int(m) for m in _MAX_MASKS.value] or [config.loss.supervised.max_masks]
  crit = config_tree.build(segmentation.CriterionConfig, config.loss.supervised,
                           'loss.supervised').for_network(
                               config.data.num_classes, hvl.query_levels(hvl.model_config(config)))
  args = inputs(config, crit, batch, _CLASSES.value)
  print(f'{device_name()}: {batch} labeled images, {_CLASSES.value} classes each, mask logits '
        f'{args[1].shape} {args[1].dtype}, {config.loss.supervised.num_points} points, '
        f'{config.loss.supervised.budget_images} images per budget', flush=True)
  base = None
  for max_masks in budgets:
    compiled = criterion_grad(dataclasses.replace(crit, max_masks=max_masks)).lower(*args).compile()
    cost = compiled.cost_analysis() or {}
    (_, terms), _ = compiled(*args)
    seconds = time_fn(compiled, *args, iters=_ITERS.value)
    base = base or seconds
    print(
        f'max_masks {max_masks:4d}: {seconds * 1e3:9.1f} ms ({seconds / base:.2f}x the first)  '
        f'{cost.get("flops", float("nan")) / 1e9:8.2f} GFLOP  '
        f'{cost.get("bytes accessed", float("nan")) / 1e9:7.2f} GB accessed  '
        f'plan {gib(planned_bytes(compiled))}  pairs dropped {int(terms["masks_dropped"])}',
        flush=True)


if __name__ == '__main__':
  app.run(main)
