"""grain input pipelines.

Training: a labeled and an unlabeled stream, each shuffled (or rare-class
sampled) and repeated, augmented deterministically per (seed, element index),
sliced per process for multi-host, batched and zipped into one batch of
`labeled_batch + unlabeled_batch` (this process's share) per step. The
iterator's state is checkpointable: restoring it reproduces the next batches.
"""
import os
from typing import Dict, Optional

import grain
import jax

from hvl_jax.common import config_tree
from hvl_jax.data import datasets, rare_class, transforms
from hvl_jax.data.data_config import DataConfig


def per_process(global_batch: int, name: str) -> int:
  n = jax.process_count()
  if global_batch % n:
    raise ValueError(f'data.{name}={global_batch} is not divisible by the {n} processes')
  return global_batch // n


def rare_class_folders(config, workdir: Optional[str]):
  """Where the rare-class statistics are cached: beside the split list (if writable), the
  workdir."""
  data = config.data
  folders = [os.path.join(datasets.splits_dir(config), datasets.spec(data.name).folder, data.split)
             if data.name in datasets.SPECS else None]
  return folders + [workdir]


def labeled_records(source, config, workdir: Optional[str]) -> grain.MapDataset:
  """Labeled records in training order: shuffled and repeated, or drawn by rare-class sampling
  (each record then carries its drawn class as 'rare_class')."""
  data = config.data
  read = lambda i: source[int(i)]
  if not data.rare_class_sampling:
    return grain.MapDataset.range(len(source)).shuffle(seed=config.seed).repeat().map(read)
  split = data.tfds.labeled_split if data.name == 'tfds' else data.split
  key = rare_class.cache_key(source, f'{data.name}/{split}', data.num_classes)
  stats = rare_class.cached_statistics(source, data.num_classes, key,
                                       rare_class_folders(config, workdir))
  sampler = rare_class.RareClassSampler(stats, data.rcs_temperature, data.rcs_min_pixels)

  def draw(_, rng):
    index, c = sampler(rng)
    return dict(source[index], rare_class=c)

  # The sampler's rng derives from the element index, so every draw differs across epochs.
  return grain.MapDataset.range(len(source)).repeat().random_map(draw, seed=config.seed)


def _stream(records: grain.MapDataset, transform, batch: int, seed: int):
  ds = records.random_map(transform, seed=seed)
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.batch(batch, drop_remainder=True)


def train_dataset(config, sources: Dict[str, object],
                  workdir: Optional[str] = None) -> grain.IterDataset:
  """Infinite IterDataset of dicts of numpy arrays (this process's share of a global batch).

  Keys: image_l (Bl, S, S, 3) uint8, label_l (Bl, S, S) int32 and, with unlabeled data, image_w (Bu,
  S, S, 3) uint8 and valid_u (Bu, S, S) bool (and label_u (Bu, S, S) int32 where the unlabeled
  records keep their labels, `transforms.unlabeled_train`); with data.strong_view.where='host' also
  image_s1 / image_s2 (Bu, S, S, 3) uint8 and box1 / box2 (Bu, S, S) bool.
  """
  data = config_tree.build(DataConfig, config.data, 'data')    # what the workers' transforms read
  accum = config.train.grad_accum
  for name in ('labeled_batch', 'unlabeled_batch'):
    if getattr(data, name) % accum:
      raise ValueError(
          f'data.{name}={getattr(data, name)} is not divisible by train.grad_accum={accum}')
  lab_b = per_process(data.labeled_batch // accum, 'labeled_batch')
  unl_b = per_process(data.unlabeled_batch // accum, 'unlabeled_batch')
  labeled = _stream(labeled_records(sources['labeled'], config, workdir),
                    lambda r, rng: transforms.labeled_train(r, rng, data), lab_b, config.seed + 1)
  if unl_b:
    if not len(sources['unlabeled']):
      raise datasets.DataError('the unlabeled split is empty but data.unlabeled_batch > 0')
    order = grain.MapDataset.range(len(sources['unlabeled'])).shuffle(seed=config.seed + 2).repeat()
    unlabeled = _stream(order.map(lambda i: sources['unlabeled'][int(i)]),
                        lambda r, rng: transforms.unlabeled_train(r, rng, data), unl_b,
                        config.seed + 3)
    n = min(len(labeled), len(unlabeled))    # both "infinite"; zip needs equal lengths
    ds = grain.experimental.ZipMapDataset([labeled[:n],
                                           unlabeled[:n]]).map(lambda ab: {**ab[0], **ab[1]})
  else:
    ds = labeled
  it = ds.to_iter_dataset(
      grain.ReadOptions(num_threads=max(1, data.num_workers), prefetch_buffer_size=data.prefetch))
  if data.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers))
  return it


def steps_per_epoch(config, sources) -> int:
  """One epoch = one pass over the unlabeled list (labeled list when training supervised only)."""
  data = config.data
  if data.unlabeled_batch:
    return max(1, -(-len(sources['unlabeled']) // data.unlabeled_batch))
  return max(1, -(-len(sources['labeled']) // data.labeled_batch))


def total_steps(config, sources) -> int:
  """Optimizer steps: train.steps if > 0, else epochs x steps per epoch."""
  if config.train.steps > 0:
    return config.train.steps
  return config.train.epochs * steps_per_epoch(config, sources)
