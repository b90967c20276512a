"""Built-in synthetic segmentation scenes with captions (no download), deterministic from
(seed, split, index).

Class 0 is the background (smooth colour gradient with noise); the others are objects with a
distinct shape and texture each: disk, square, triangle, striped ellipse, ring, checkered
diamond, cross, star (the first `num_classes - 1` are used, so a model can train on fewer
classes than the world holds). Each class has a base colour that every object of it varies
around (as real classes have typical colours), so colour, shape and texture all carry the class.
Every scene has a caption naming its visible objects with their size and colour
(`caption`, from the fixed vocabulary `WORDS`): the text a CLIP of this world learns from
(tools/pretrain_clip.py).
"""
import hashlib
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

CLASS_NAMES = ('background', 'disk', 'square', 'triangle', 'striped ellipse', 'ring',
               'checkered diamond', 'cross', 'star')
CLASS_COLOURS = np.asarray([(0, 0, 0), (220, 60, 50), (60, 200, 70), (70, 90, 230), (230, 210, 60),
                            (200, 70, 210), (60, 210, 220), (240, 140, 40), (235, 235, 235)],
                           np.float64)
COLOUR_NAMES = ('black', 'red', 'green', 'blue', 'yellow', 'purple', 'cyan', 'orange', 'white')
SIZE_NAMES = ('small', 'large')
LARGE_RADIUS = 0.2          # objects of radius >= 0.2 x the image size are 'large'
MIN_VISIBLE_PIXELS = 16     # an object mostly covered by later ones is not in the caption
# The CLIP of this world, pretrained on its captioned scenes (python -m tools.pretrain_clip).
TINY_CLIP = os.path.join(os.path.dirname(__file__), 'tiny_clip')
SPLIT_OFFSETS = {'labeled': 0, 'unlabeled': 1_000_000, 'val': 2_000_000, 'pretrain': 3_000_000}
# Every word a caption or a class prompt of this world uses.
WORDS = tuple(sorted({w for n in CLASS_NAMES + COLOUR_NAMES + SIZE_NAMES for w in n.split()}
                     | {'a', 'photo', 'of', 'and', 'with', 'on', 'the', 'an', 'empty'}))


class SceneObject(NamedTuple):
  kind: int           # class id
  large: bool
  pixels: int         # visible pixels in the final label


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
    cv2.fillPoly(m, [polygon(cx, cy, [r] * 3, angle)], 1)
  elif kind == 4:
    cv2.ellipse(m, c, (int(r), int(0.6 * r)), angle, 0, 360, 1, -1)
  elif kind == 5:
    cv2.circle(m, c, int(r), 1, -1)
    cv2.circle(m, c, int(0.55 * r), 0, -1)
  elif kind == 6:
    cv2.fillPoly(m, [polygon(cx, cy, [r] * 4, angle)], 1)
  elif kind == 7:     # a plus sign: two crossed bars
    for a in (angle, angle + 90):
      bar = cv2.boxPoints(((cx, cy), (2 * r, 0.6 * r), a)).astype(np.int32)
      cv2.fillPoly(m, [bar], 1)
  else:               # a five-pointed star
    cv2.fillPoly(m, [polygon(cx, cy, [r, 0.45 * r] * 5, angle)], 1)
  return m.astype(bool)


def polygon(cx: float, cy: float, radii, angle: float) -> np.ndarray:
  """Vertices at equal angles from `angle` (degrees), the i-th at radius radii[i]: (N, 2) int32."""
  step = 360 / len(radii)
  return np.asarray([
      (cx + r * np.cos(np.radians(angle + i * step)), cy + r * np.sin(np.radians(angle + i * step)))
      for i, r in enumerate(radii)
  ], np.int32)


def _scene(seed: int, index: int, size: int, num_classes: int):
  """(image (size, size, 3) uint8, label (size, size) uint8, objects in drawing order)."""
  if not 2 <= num_classes <= len(CLASS_NAMES):
    raise ValueError(f'synthetic data supports 2..{len(CLASS_NAMES)} classes, got {num_classes}')
  rng = np.random.default_rng([seed, index])
  yy, xx = np.mgrid[:size, :size] / size
  c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
  t = (xx * np.cos(rng.uniform(0, 6.3)) + yy * np.sin(rng.uniform(0, 6.3)))[..., None]
  image = c0 * (1 - t) + c1 * t + rng.normal(0, 8, (size, size, 3))
  label = np.zeros((size, size), np.uint8)
  owner = np.full((size, size), -1, np.int32)     # which object each pixel shows
  drawn = []
  for i in range(int(rng.integers(1, 4))):
    kind = int(rng.integers(1, num_classes))
    r = rng.uniform(0.12, 0.28) * size
    cx, cy = rng.uniform(r, size - r, 2)
    mask = _shape_mask(kind, size, cx, cy, r, rng.uniform(0, 360))
    colour = np.clip(CLASS_COLOURS[kind] + rng.normal(0, 25, 3), 0, 255)
    image[mask] = (colour * _texture(kind, size, rng)[..., None])[mask] + rng.normal(
        0, 6, (mask.sum(), 3))
    label[mask] = kind
    owner[mask] = i
    drawn.append((kind, r >= LARGE_RADIUS * size))
  objects = [
      SceneObject(kind, large, int((owner == i).sum())) for i, (kind, large) in enumerate(drawn)
  ]
  return np.clip(image, 0, 255).astype(np.uint8), label, objects


def make_scene(seed: int, index: int, size: int, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
  """One scene: image (size, size, 3) uint8 RGB and label (size, size) uint8 in [0, num_classes)."""
  image, label, _ = _scene(seed, index, size, num_classes)
  return image, label


def describe(obj: SceneObject) -> str:
  """'a small red disk'."""
  words = f'{SIZE_NAMES[obj.large]} {COLOUR_NAMES[obj.kind]} {CLASS_NAMES[obj.kind]}'
  return f'a {words}'


def caption(objects: List[SceneObject]) -> str:
  """The caption of a scene: its visible objects, in drawing order ('a photo of a small red disk
  and a large blue triangle.'); 'a photo of the empty background.' when none is visible."""
  return photo_of([describe(o) for o in objects if o.pixels >= MIN_VISIBLE_PIXELS])


def photo_of(parts: List[str]) -> str:
  """'a photo of a, b and c.' ('a photo of the empty background.' for no parts)."""
  if not parts:
    return 'a photo of the empty background.'
  listed = parts[0] if len(parts) == 1 else ', '.join(parts[:-1]) + ' and ' + parts[-1]
  return f'a photo of {listed}.'


def make_captioned_scene(seed: int, index: int, size: int,
                         num_classes: int) -> Tuple[np.ndarray, np.ndarray, str]:
  """`make_scene` and the scene's caption."""
  image, label, objects = _scene(seed, index, size, num_classes)
  return image, label, caption(objects)


def scene_name(split: str, index: int) -> str:
  """'synthetic_unlabeled_000042': a scene's name, as records and tools.suggest_labels give it."""
  return f'synthetic_{split}_{index:06d}'


class SyntheticSource:
  """Random-access source of synthetic records {'image', 'label', 'caption', 'name'}: the first
  `length` scenes of one split, or the scenes (split, index) listed in `scenes`."""

  def __init__(self, split: str, length: int, size: int, num_classes: int, seed: int = 0,
               scenes: Optional[Sequence[Tuple[str, int]]] = None):
    for name in {split} | {sp for sp, _ in scenes or ()}:
      if name not in SPLIT_OFFSETS:
        raise ValueError(f'unknown synthetic split {name!r}; valid: {sorted(SPLIT_OFFSETS)}')
    self.split, self.size, self.num_classes, self.seed = split, size, num_classes, seed
    self.scenes = list(scenes) if scenes is not None else [(split, i) for i in range(length)]
    self.length = len(self.scenes)

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    if not 0 <= index < self.length:
      raise IndexError(f'synthetic {self.split} index {index} out of range [0, {self.length})')
    split, i = self.scenes[index]
    image, label, text = make_captioned_scene(self.seed, SPLIT_OFFSETS[split] + i, self.size,
                                              self.num_classes)
    return dict(image=image, label=label, caption=text, name=scene_name(split, i))

  def label_fingerprint(self) -> str:
    """Digest of the generated label maps (they follow the generator's code, not only its seed)."""
    h = hashlib.sha256()
    for i in range(self.length):
      h.update(self[i]['label'].tobytes())
    return h.hexdigest()
