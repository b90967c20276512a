"""Rare-class sampling of the labeled set (DAFormer-style; the paper, section 4.1).

f_c = fraction of labeled pixels of class c; p(c) ∝ exp((1 - f_c) / T); then a
uniformly drawn labeled image that holds c. Statistics are computed once and
cached as JSON (next to the split when writable).
"""
import json
import os
from typing import Dict, List, Optional

import numpy as np
from absl import logging


def class_statistics(source, num_classes: int, ignore: int = 255) -> Dict[str, list]:
  """Per-class pixel counts and the images holding each class, from the labeled source."""
  counts = np.zeros(num_classes, np.int64)
  images: List[List[int]] = [[] for _ in range(num_classes)]
  for i in range(len(source)):
    label = source[i]['label']
    hist = np.bincount(label[label != ignore].ravel(), minlength=num_classes)[:num_classes]
    counts += hist
    for c in np.flatnonzero(hist):
      images[c].append(i)
  return dict(pixel_counts=counts.tolist(), images=images)


def cached_statistics(source, num_classes: int, cache_paths) -> Dict[str, list]:
  """Loads the first existing cache of `cache_paths`, else computes and writes the first writable one."""
  for path in cache_paths:
    if path and os.path.exists(path):
      with open(path) as f:
        stats = json.load(f)
      if len(stats['pixel_counts']) == num_classes and sum(map(len, stats['images'])) > 0:
        return stats
  stats = class_statistics(source, num_classes)
  for path in cache_paths:
    if not path:
      continue
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      tmp = f'{path}.tmp{os.getpid()}'
      with open(tmp, 'w') as f:
        json.dump(stats, f)
      os.replace(tmp, path)
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
  """Maps (rng) -> labeled image index: class by p(c), then an image holding it."""

  def __init__(self, stats, temperature: float):
    self.probs = class_probabilities(stats['pixel_counts'], temperature)
    self.images = [np.asarray(x, np.int64) for x in stats['images']]

  def __call__(self, rng: np.random.Generator) -> int:
    c = rng.choice(len(self.probs), p=self.probs)
    return int(rng.choice(self.images[c]))


def default_cache_paths(split_file: Optional[str], workdir: Optional[str], tag: str):
  paths = []
  if split_file:
    paths.append(os.path.join(os.path.dirname(split_file), 'class_stats.json'))
  if workdir:
    paths.append(os.path.join(workdir, f'class_stats_{tag}.json'))
  return paths
