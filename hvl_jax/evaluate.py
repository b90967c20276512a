"""Evaluation: sliding-window or whole-image inference, confusion matrix, mIoU.

Writes `<workdir>/eval_<tag>.json` (key `miou`, a fraction, plus per-class IoU)
and a readable per-class table `<workdir>/eval_<tag>.txt`.
"""
import json
import os
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax import metrics
from hvl_jax.models import clip as clip_lib
from hvl_jax.models import hvl


def window_starts(length: int, crop: int, stride: int):
  """Window offsets covering [0, length) with the last window flush with the end."""
  if length <= crop:
    return [0]
  starts = list(range(0, length - crop, stride)) + [length - crop]
  return sorted(set(starts))


class Predictor:
  """Jitted per-window class scores plus host-side sliding-window assembly."""

  def __init__(self, config, model: hvl.HVL):
    self.config, self.model = config, model
    self.crop = config.data.crop_size
    self.pad_multiple = 2 * model.cfg.clip.patch_size  # the coarsest pyramid level halves the token grid
    mode = config.inference.mode

    def scores(params, images):
      out = model.apply({'params': params}, clip_lib.normalize_images(images))
      cls, masks = out['predictions'][-1]
      return hvl.upsampled_class_scores(cls, masks, images.shape[1:3], mode)

    self.scores = jax.jit(scores)

  def predict(self, params, image: np.ndarray) -> np.ndarray:
    """image (H, W, 3) uint8 -> class map (H, W) int32."""
    h, w = image.shape[:2]
    if self.config.inference.window == 'whole':
      ph, pw = -h % self.pad_multiple, -w % self.pad_multiple
      padded = np.pad(image, ((0, ph), (0, pw), (0, 0)))
      return np.asarray(self.scores(params, padded[None])[0, :h, :w].argmax(-1), np.int32)
    crop = self.crop
    padded = np.pad(image, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)))
    ph, pw = padded.shape[:2]
    stride = max(1, int(crop * self.config.inference.stride_fraction))
    acc = np.zeros((ph, pw, self.config.data.num_classes), np.float32)
    count = np.zeros((ph, pw, 1), np.float32)
    for y in window_starts(ph, crop, stride):
      for x in window_starts(pw, crop, stride):
        acc[y:y + crop, x:x + crop] += np.asarray(self.scores(params, padded[None, y:y + crop, x:x + crop])[0])
        count[y:y + crop, x:x + crop] += 1
    return (acc / count)[:h, :w].argmax(-1).astype(np.int32)


class Evaluator:
  """mIoU of a parameter set on a source; `predictor.predict(params, image) -> (H, W)` classes.

  After `run`, `samples` holds (image, prediction, label) of the first `num_samples` images
  (for TensorBoard).
  """

  def __init__(self, config, predictor, source, class_names: Sequence[str], num_samples: int = 4):
    self.config, self.predictor, self.source, self.names = config, predictor, source, list(class_names)
    self.num_samples, self.samples = num_samples, []
    k = config.data.num_classes
    self.confusion = jax.jit(lambda p, l: metrics.confusion_matrix(p, l, k, config.data.ignore_index))

  def run(self, params, workdir: Optional[str], tag: str = 'eval'):
    k = self.config.data.num_classes
    conf = jnp.zeros((k, k), jnp.int32)
    n = len(self.source)
    self.samples = []
    for i in range(n):
      record = self.source[i]
      pred = self.predictor.predict(params, record['image'])
      if i < self.num_samples:
        self.samples.append((record['image'], pred, record['label']))
      conf = conf + self.confusion(pred, record['label'])
      if jax.process_index() == 0 and (i + 1 == n or (i + 1) % max(1, n // 20) == 0):
        done = int(30 * (i + 1) / n)
        sys.stdout.write(f'\reval [{"#" * done}{"." * (30 - done)}] {i + 1}/{n}')
        sys.stdout.flush()
    print(flush=True)
    miou, per_class = metrics.mean_iou(np.asarray(conf))
    results = dict(miou=miou, per_class_iou={n_: (None if np.isnan(v) else float(v))
                                             for n_, v in zip(self.names, per_class)},
                   num_images=n, tag=tag)
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


def restore_params(config, workdir: str, checkpoint: Optional[str]):
  """(model, params, class names) from `checkpoint` or the newest checkpoint of the workdir."""
  from hvl_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from hvl_jax import optim, train  # pylint: disable=g-import-not-at-top
  model, clip, names = train.build(config)
  directory, step = checkpoint or os.path.join(workdir, 'checkpoints'), None
  if os.path.isdir(os.path.join(directory, 'state')):     # a single step directory: .../checkpoints/300
    directory, step = os.path.dirname(os.path.abspath(directory)), int(os.path.basename(directory))
  tx_fn = lambda p: optim.make_optimizer(config, p, 1)
  abstract = jax.eval_shape(lambda: train.create_state(config, model, clip, tx_fn, config.data.crop_size))
  state, step = ckpt_lib.Checkpointer(directory, async_save=False).restore(abstract, step=step)
  print(f'Restored {directory} step {step}', flush=True)
  return model, train.full_params(state), names


def evaluate_checkpoint(config, workdir: str, checkpoint: Optional[str] = None):
  from hvl_jax.data import datasets  # pylint: disable=g-import-not-at-top
  model, params, names = restore_params(config, workdir, checkpoint)
  source = datasets.make_sources(config)['val']
  return Evaluator(config, Predictor(config, model), source, names).run(params, workdir, tag='eval')
