"""Evaluation: a predictor's class maps on a source -> confusion matrix -> mIoU.

Writes `<workdir>/eval_<tag>.json` (key `miou`, a fraction, plus per-class IoU)
and a readable per-class table `<workdir>/eval_<tag>.txt`.
"""
import json
import os
import time
from typing import Optional, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from hvl_jax import inference
from hvl_jax import metrics
from hvl_jax import state as state_lib
from hvl_jax.data import datasets


def process_share(n: int):
  """The indices of the n images that this process evaluates (every process_count-th)."""
  return range(jax.process_index(), n, jax.process_count())


def summed_over_processes(confusion: np.ndarray) -> np.ndarray:
  """The confusion matrices of every process, summed (identity with one process)."""
  if jax.process_count() == 1:
    return confusion
  return np.asarray(multihost_utils.process_allgather(confusion)).sum(0)


class Progress:
  """A console line for process 0: images done, images/s, ETA."""

  def __init__(self, total: int, every_s: float = 10.0):
    self.total, self.every_s = total, every_s
    self.t0 = self.last = time.time()

  def update(self, done: int):
    now = time.time()
    if jax.process_index() != 0 or (now - self.last < self.every_s and done != self.total):
      return
    self.last = now
    rate = done / max(now - self.t0, 1e-9)
    eta = time.strftime('%H:%M:%S', time.gmtime((self.total - done) / max(rate, 1e-9)))
    print(f'eval {done}/{self.total} images, {rate:.2f} images/s, ETA {eta}', flush=True)


class Evaluator:
  """mIoU of a parameter set on a source, with a predictor (`inference.Predictor` or any object
  with `prepare(params)` and `predict(prepared, image) -> (H, W)` classes).

  Each process evaluates its share of the images (`process_share`); the confusion matrices are
  summed over the processes. After `run`, `samples` holds (image, prediction, label) of the first
  `num_samples` images of process 0 (for TensorBoard).
  """

  def __init__(self, config, predictor, source, class_names: Sequence[str], num_samples: int = 4):
    self.config, self.predictor, self.source, self.names = config, predictor, source, list(class_names)
    self.num_samples, self.samples = num_samples, []

  def run(self, params, workdir: Optional[str], tag: str = 'eval'):
    k = self.config.data.num_classes
    conf = np.zeros((k, k), np.int64)
    n = len(self.source)
    self.samples = []
    prepared = self.predictor.prepare(params)
    share = process_share(n)
    progress = Progress(len(share))
    for done, i in enumerate(share, 1):
      record = self.source[i]
      pred = self.predictor.predict(prepared, record['image'])
      if len(self.samples) < self.num_samples:
        self.samples.append((record['image'], pred, record['label']))
      conf += metrics.confusion_matrix(pred, record['label'], k, self.config.data.ignore_index)
      progress.update(done)
    conf = summed_over_processes(conf)
    miou, per_class = metrics.mean_iou(conf)
    results = dict(miou=miou, per_class_iou={n_: (None if np.isnan(v) else float(v))
                                             for n_, v in zip(self.names, per_class)},
                   num_images=n, tag=tag, seconds=round(time.time() - progress.t0, 2))
    table = format_table(self.names, per_class, miou)
    print(table, flush=True)
    if workdir and jax.process_index() == 0:
      with open(os.path.join(workdir, f'eval_{tag}.json'), 'w') as f:
        json.dump(results, f, indent=2)
      with open(os.path.join(workdir, f'eval_{tag}.txt'), 'w') as f:
        f.write(table + '\n')
    return results


def format_table(names, per_class, miou) -> str:
  lines = [f'{"class":24s} IoU']
  lines += [f'{n:24s} {"  n/a" if np.isnan(v) else f"{100 * v:5.1f}"}' for n, v in zip(names, per_class)]
  lines.append(f'{"mIoU":24s} {100 * miou:5.1f}')
  return '\n'.join(lines)


def evaluate_checkpoint(config, workdir: str, checkpoint: Optional[str] = None):
  """Evaluates `checkpoint` (default: the newest in <workdir>/checkpoints) on the val split."""
  model, clip, names = state_lib.build(config)
  params = state_lib.restore_params(config, model, clip, checkpoint or os.path.join(workdir, 'checkpoints'))
  source = datasets.make_sources(config)['val']
  return Evaluator(config, inference.Predictor.from_config(config, model), source, names).run(params, workdir, tag='eval')
