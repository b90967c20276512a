"""Training augmentations in numpy/cv2 (run in grain workers), deterministic given an rng.

Geometric (both labeled and unlabeled), as SemiVL: a random rescale, pad to the crop with
ignore, random crop, horizontal flip. The rescale is mmseg's keep-ratio
`Resize(img_scale, ratio_range)` where `data.img_scale` is set (VOC, ADE20K: (2048, 512)),
else UniMatch's: the long side drawn from [0.5, 2] of the native one (COCO, Cityscapes).
Photometric (strong views): colour jitter, grayscale, Gaussian blur. CutMix boxes for the
strong views. These run here with data.strong_view.where='host'; by default the train step makes the
strong views on the accelerator from the same distributions (`device_augment`).
"""
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from hvl_jax.common.constants import IGNORE_INDEX

IGNORE = IGNORE_INDEX


def keep_ratio_size(height: int, width: int, scale: Sequence[float]) -> Tuple[int, int]:
  """mmcv's keep-ratio `rescale_size`: the image fits inside the scale's long and short edges,
  factor = min(long edge / max(h, w), short edge / min(h, w)), sizes rounded half up."""
  factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
  return int(height * factor + 0.5), int(width * factor + 0.5)


def rescale_size(height: int, width: int, img_scale: Sequence[int],
                 ratio: float = 1.0) -> Tuple[int, int]:
  """mmseg's `Resize(img_scale)` at `ratio` (drawn from ratio_range in training): the keep-ratio
  size for the scale (int(img_scale[0] * ratio), int(img_scale[1] * ratio)). (new_height,
  new_width)."""
  return keep_ratio_size(height, width, (int(img_scale[0] * ratio), int(img_scale[1] * ratio)))


def short_side_size(height: int, width: int, short: int) -> Tuple[int, int]:
  """mmseg's `Resize(min_size=short)` at evaluation: the short side becomes `short` (the
  keep-ratio size of the scale (short * long side / short side, short), as mmseg computes it)."""
  return keep_ratio_size(height, width, (short * height / width, short) if height > width
                         else (short, short * width / height))


def long_side_size(height: int, width: int, long_side: int) -> Tuple[int, int]:
  """UniMatch's `resize`: the long side becomes `long_side`, the other keeps the aspect ratio."""
  if height > width:
    return long_side, int(1.0 * width * long_side / height + 0.5)
  return int(1.0 * height * long_side / width + 0.5), long_side


def random_rescale_size(height: int, width: int, rng, ratio_range: Tuple[float, float],
                        img_scale: Optional[Sequence[int]] = None) -> Tuple[int, int]:
  """The training rescale: mmseg `Resize(img_scale, ratio_range)` if img_scale, else UniMatch's
  long side drawn uniformly from the integers [int(L * lo), int(L * hi)]."""
  if img_scale:
    return rescale_size(height, width, img_scale, rng.uniform(*ratio_range))
  long_edge = max(height, width)
  return long_side_size(height, width, int(rng.integers(int(long_edge * ratio_range[0]),
                                                         int(long_edge * ratio_range[1]) + 1)))


def resize(image, label, size: Tuple[int, int]):
  """Image (bilinear) and label (nearest; may be None) to size (height, width)."""
  hw = (max(1, size[1]), max(1, size[0]))     # cv2 takes (width, height)
  image = cv2.resize(image, hw, interpolation=cv2.INTER_LINEAR)
  if label is not None:
    label = cv2.resize(label, hw, interpolation=cv2.INTER_NEAREST)
  return image, label


def pad_to(image, label, size: int):
  """Pads bottom/right to at least size x size: image with 0, label (H, W[, C]) with ignore."""
  h, w = image.shape[:2]
  ph, pw = max(0, size - h), max(0, size - w)
  if ph or pw:
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    label = np.pad(label, ((0, ph), (0, pw)) + ((0, 0),) * (label.ndim - 2), constant_values=IGNORE)
  return image, label


def random_geometric(image, label, rng, crop: int, scale_range: Tuple[float, float],
                     img_scale: Optional[Sequence[int]] = None):
  """Random rescale, pad (ignore), crop and flip. Returns image (crop, crop, 3) and label
  (crop, crop[, C]): a label of C channels (nearest-resized, each padded with ignore) carries
  several maps through one draw."""
  image, label = resize(image, label,
                        random_rescale_size(*image.shape[:2], rng, scale_range, img_scale))
  image, label = pad_to(image, label, crop)
  h, w = label.shape[:2]
  y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
  image, label = image[y:y + crop, x:x + crop], label[y:y + crop, x:x + crop]
  if rng.random() < 0.5:
    image, label = image[:, ::-1], label[:, ::-1]
  return np.ascontiguousarray(image), np.ascontiguousarray(label)


def _gray(image):
  return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def color_jitter(image, rng, brightness, contrast, saturation, hue):
  """torchvision-style ColorJitter (factors drawn uniformly; fixed order b, c, s, h)."""
  x = image.astype(np.float32)
  x = x * rng.uniform(1 - brightness, 1 + brightness)
  x = np.clip(x, 0, 255)
  mean = _gray(x.astype(np.uint8)).mean()
  x = np.clip((x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean, 0, 255)
  g = _gray(x.astype(np.uint8))[..., None]
  x = np.clip((x - g) * rng.uniform(1 - saturation, 1 + saturation) + g, 0, 255).astype(np.uint8)
  shift = int(round(rng.uniform(-hue, hue) * 180))   # OpenCV hue is in [0, 180)
  if not shift:      # the uint8 HSV round trip is lossy: skip it when there is nothing to do
    return x
  hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
  hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
  return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def strong_photometric(image, rng, cfg):
  """UniMatch's strong view: jitter (p), grayscale (p), Gaussian blur sigma in [0.1, 2] (p)."""
  if rng.random() < cfg.color_jitter_p:
    image = color_jitter(image, rng, *cfg.color_jitter)
  if rng.random() < cfg.grayscale_p:
    image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)
  if rng.random() < cfg.blur_p:
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.1, 2.0))
  return image


def cutmix_box(size: int, rng, p: float = 0.5, area=(0.02, 0.4), ratio=(0.3, 1 / 0.3)):
  """(size, size) bool box, empty with probability 1 - p (UniMatch's `obtain_cutmix_box`)."""
  box = np.zeros((size, size), bool)
  if rng.random() > p:
    return box
  while True:
    a = rng.uniform(*area) * size * size
    r = rng.uniform(*ratio)
    w, h = int(np.sqrt(a / r)), int(np.sqrt(a * r))
    x, y = int(rng.integers(0, size)), int(rng.integers(0, size))
    if x + w <= size and y + h <= size:
      break
  box[y:y + h, x:x + w] = True
  return box


# DAFormer's rare-class sampling re-draws the crop up to this many times.
RARE_CLASS_CROP_TRIES = 10


def labeled_train(record, rng, cfg) -> Dict[str, np.ndarray]:
  """Labeled example -> {'image_l', 'label_l'}.

  A record drawn for a rare class (`record['rare_class']` >= 0, `rare_class.RareClassSampler`)
  gets its crop re-drawn up to RARE_CLASS_CROP_TRIES times, as DAFormer, until the crop keeps
  more than data.rcs_min_pixels * data.rcs_min_crop_ratio pixels of that class.
  """
  c = record.get('rare_class', -1)
  need = cfg.rcs_min_pixels * cfg.rcs_min_crop_ratio
  for _ in range(1 + (RARE_CLASS_CROP_TRIES if c >= 0 else 0)):
    image, label = random_geometric(record['image'], record['label'], rng, cfg.crop_size,
                                    cfg.scale_range, cfg.img_scale)
    if c < 0 or np.count_nonzero(label == c) > need:
      break
  return dict(image_l=image, label_l=label.astype(np.int32))


def unlabeled_train(record, rng, cfg) -> Dict[str, np.ndarray]:
  """Unlabeled example -> weak view and the valid mask; with data.strong_view.where='host' also two
  strong views and two CutMix boxes (else the train step makes them, `device_augment`).

  A record that keeps its label (the small world's unlabeled scenes) also gives `label_u`, that
  label under the weak view's geometry: it scores the pseudo-labels and never reaches the loss.
  """
  image = record['image']
  track = np.zeros(image.shape[:2], np.uint8)      # tracks crop padding
  hidden = record.get('label')
  if hidden is not None:
    track = np.stack([track, hidden], -1)
  weak, tracked = random_geometric(image, track, rng, cfg.crop_size, cfg.scale_range, cfg.img_scale)
  pad = tracked if hidden is None else tracked[..., 0]
  out = dict(image_w=weak, valid_u=pad != IGNORE)
  if hidden is not None:
    out['label_u'] = tracked[..., 1].astype(np.int32)
  strong = cfg.strong_view
  if strong.where == 'host':
    out.update(image_s1=strong_photometric(weak, rng, strong),
               box1=cutmix_box(cfg.crop_size, rng,
                               strong.cutmix_p), image_s2=strong_photometric(weak, rng, strong),
               box2=cutmix_box(cfg.crop_size, rng, strong.cutmix_p))
  return out
