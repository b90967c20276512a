"""Rare-class sampling of the labeled set (DAFormer's; the paper, section 4.1).

f_c = fraction of labeled pixels of class c; p(c) ∝ exp((1 - f_c) / T); then a uniformly drawn
labeled image that holds more than data.rcs_min_pixels pixels of c (every image holding c where
none does). The crop of such an image is re-drawn until it keeps the class
(`transforms.labeled_train`). Statistics are computed once and cached as JSON under a key of the
split and the labels' content, so a changed label map is never read from a stale cache.
"""
import hashlib
import json
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from hvl_jax.common import storage


def class_statistics(source, num_classes: int, ignore: int = 255) -> Dict[str, list]:
  """Per-class pixel counts and, per class, [image index, pixels of the class] of the images holding
  it."""
  counts = np.zeros(num_classes, np.int64)
  images: List[List[List[int]]] = [[] for _ in range(num_classes)]
  for i in range(len(source)):
    label = source[i]['label']
    hist = np.bincount(label[label != ignore].ravel(), minlength=num_classes)[:num_classes]
    counts += hist
    for c in np.flatnonzero(hist):
      images[c].append([i, int(hist[c])])
  return dict(pixel_counts=counts.tolist(), images=images)


def cache_key(source, split: str, num_classes: int) -> str:
  """Hex digest of the split's name, the class count and the source's label content
  (`source.label_fingerprint()`: e.g. the label files' bytes)."""
  h = hashlib.sha256(f'{split}\n{num_classes}\n'.encode())
  h.update(source.label_fingerprint().encode())
  return h.hexdigest()


def cached_statistics(source, num_classes: int, key: str,
                      folders: Sequence[Optional[str]]) -> Dict[str, list]:
  """Statistics from `<folder>/class_stats_<key>.json` of the first folder holding it; else
  computed and written (atomically) to the first writable folder."""
  name = f'class_stats_{key[:16]}.json'
  for folder in folders:
    path = folder and storage.join(folder, name)
    if path and storage.exists(path):
      stats = json.loads(storage.read_text(path))
      if stats.get('key') == key:
        return stats
  stats = dict(class_statistics(source, num_classes), key=key)
  for folder in filter(None, folders):
    path = storage.join(folder, name)
    try:
      storage.write_text(path, json.dumps(stats))
      logging.info('Rare-class statistics cached at %s', path)
      break
    except OSError:
      continue
  return stats


def class_probabilities(pixel_counts, temperature: float) -> np.ndarray:
  """p(c) ∝ exp((1 - f_c) / T) over classes that appear in at least one image."""
  counts = np.asarray(pixel_counts, np.float64)
  freq = counts / max(counts.sum(), 1)
  logits = np.where(counts > 0, (1 - freq) / temperature, -np.inf)
  p = np.exp(logits - logits[np.isfinite(logits)].max())
  return p / p.sum()


class RareClassSampler:
  """Maps (rng) -> (labeled image index, drawn class): class by p(c), then an image holding it.

  An image qualifies for class c if it holds more than `min_pixels` of its pixels (DAFormer);
  where no image does, every image holding c qualifies.
  """

  def __init__(self, stats, temperature: float, min_pixels: int = 0):
    self.probs = class_probabilities(stats['pixel_counts'], temperature)
    self.images = []
    for held in stats['images']:
      held = np.asarray(held, np.int64).reshape(-1, 2)
      enough = held[held[:, 1] > min_pixels, 0]
      self.images.append(enough if len(enough) else held[:, 0])

  def __call__(self, rng: np.random.Generator):
    c = int(rng.choice(len(self.probs), p=self.probs))
    return int(rng.choice(self.images[c])), c
