"""Built-in synthetic segmentation scenes (no download), deterministic from (seed, split, index).

Class 0 is the background (smooth colour gradient with noise); the others are
objects with a distinct shape and texture each: disk, square, triangle, striped
ellipse, ring, checkered diamond (the first `num_classes - 1` are used).
Each class has a base colour that every object of it varies around (as real classes have
typical colours), so colour, shape and texture all carry the class.
"""
from typing import Dict, Tuple

import cv2
import numpy as np

CLASS_NAMES = ('background', 'disk', 'square', 'triangle', 'striped ellipse', 'ring', 'checkered diamond')
CLASS_COLOURS = np.asarray([(0, 0, 0), (220, 60, 50), (60, 200, 70), (70, 90, 230), (230, 210, 60),
                            (200, 70, 210), (60, 210, 220)], np.float64)
SPLIT_OFFSETS = {'labeled': 0, 'unlabeled': 1_000_000, 'val': 2_000_000}


def _texture(kind: int, size: int, rng) -> np.ndarray:
  """(size, size) float texture multiplier in [0.5, 1]."""
  yy, xx = np.mgrid[:size, :size]
  if kind == 4:        # stripes
    period = rng.uniform(4, 8)
    return 0.6 + 0.4 * (np.sin(2 * np.pi * (xx + yy) / period) > 0)
  if kind == 6:        # checkerboard
    cell = int(rng.integers(3, 6))
    return 0.55 + 0.45 * (((xx // cell) + (yy // cell)) % 2)
  return np.ones((size, size))


def _shape_mask(kind: int, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
  m = np.zeros((size, size), np.uint8)
  c = (int(cx), int(cy))
  if kind == 1:
    cv2.circle(m, c, int(r), 1, -1)
  elif kind == 2:
    box = cv2.boxPoints(((cx, cy), (1.6 * r, 1.6 * r), angle)).astype(np.int32)
    cv2.fillPoly(m, [box], 1)
  elif kind == 3:
    pts = [(cx + r * np.cos(np.radians(angle + a)), cy + r * np.sin(np.radians(angle + a))) for a in (0, 120, 240)]
    cv2.fillPoly(m, [np.asarray(pts, np.int32)], 1)
  elif kind == 4:
    cv2.ellipse(m, c, (int(r), int(0.6 * r)), angle, 0, 360, 1, -1)
  elif kind == 5:
    cv2.circle(m, c, int(r), 1, -1)
    cv2.circle(m, c, int(0.55 * r), 0, -1)
  else:
    pts = [(cx + r * np.cos(np.radians(angle + a)), cy + r * np.sin(np.radians(angle + a))) for a in (0, 90, 180, 270)]
    cv2.fillPoly(m, [np.asarray(pts, np.int32)], 1)
  return m.astype(bool)


def make_scene(seed: int, index: int, size: int, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """One scene: image (size, size, 3) uint8 RGB and label (size, size) uint8 in [0, num_classes)."""
  if not 2 <= num_classes <= len(CLASS_NAMES):
    raise ValueError(f'synthetic data supports 2..{len(CLASS_NAMES)} classes, got {num_classes}')
  rng = np.random.default_rng([seed, index])
  yy, xx = np.mgrid[:size, :size] / size
  c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
  t = (xx * np.cos(rng.uniform(0, 6.3)) + yy * np.sin(rng.uniform(0, 6.3)))[..., None]
  image = c0 * (1 - t) + c1 * t + rng.normal(0, 8, (size, size, 3))
  label = np.zeros((size, size), np.uint8)
  for _ in range(int(rng.integers(1, 4))):
    kind = int(rng.integers(1, num_classes))
    r = rng.uniform(0.12, 0.28) * size
    cx, cy = rng.uniform(r, size - r, 2)
    mask = _shape_mask(kind, size, cx, cy, r, rng.uniform(0, 360))
    colour = np.clip(CLASS_COLOURS[kind] + rng.normal(0, 25, 3), 0, 255)
    image[mask] = (colour * _texture(kind, size, rng)[..., None])[mask] + rng.normal(0, 6, (mask.sum(), 3))
    label[mask] = kind
  return np.clip(image, 0, 255).astype(np.uint8), label


class SyntheticSource:
  """Random-access source of synthetic records {'image', 'label', 'name'} for one split."""

  def __init__(self, split: str, length: int, size: int, num_classes: int, seed: int = 0):
    if split not in SPLIT_OFFSETS:
      raise ValueError(f'unknown synthetic split {split!r}; valid: {sorted(SPLIT_OFFSETS)}')
    self.split, self.length, self.size, self.num_classes, self.seed = split, length, size, num_classes, seed

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    if not 0 <= index < self.length:
      raise IndexError(f'synthetic {self.split} index {index} out of range [0, {self.length})')
    image, label = make_scene(self.seed, SPLIT_OFFSETS[self.split] + index, self.size, self.num_classes)
    return dict(image=image, label=label, name=f'synthetic_{self.split}_{index:06d}')
