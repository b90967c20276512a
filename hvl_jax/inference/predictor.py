"""Inference geometry (SemiVL's protocols) and the predictor: image -> class map.

`inference.protocol`:
  'zegclip_sliding_window'  SemiVL's evaluation of VOC, ADE20K and COCO: the image resized so
      that its short side is `inference.short_side` (mmseg's `min_size`; 0 keeps the native size,
      as for COCO), windows of the crop at `inference.stride` (`window_boxes`, smaller than the
      crop where the image is), class probabilities averaged where windows overlap, resized
      bilinearly (corners aligned) to the label's size, argmax.
  'sliding_window'  UniMatch's evaluation of Cityscapes: windows from 0 every `stride` pixels,
      cut at the image's edge (`sliding_window_boxes`), probabilities averaged.
  'whole'  the whole image padded to the network's multiple (small images, the demo).

Any photo, bounded memory: under every protocol an image whose long side (after the short-side
resize) exceeds `inference.max_side` (0 = 4 x the crop) is resized down to it (area
interpolation), predicted there, and its class map brought back to the image's size (the
probabilities resized bilinearly, corners aligned, a band of rows at a time, then argmax). The
network, the windows and the probabilities then never exceed max_side x max_side, and the class
map is the only array at the photo's own size (after the short-side resize too, the probabilities
are brought back a band of rows at a time). The benchmarks' images are below the limit.

`Predictor.predict(prepared, image)` is what evaluation and prediction call (`predict_many` for a
list of images, whose windows are batched together), with `prepared = predictor.prepare(params)`
computed once per parameter set (for the network: the text queries, which do not depend on the
image). `Predictor.from_config` wraps the network; any `scores(prepared, images (N, h, w, 3) uint8,
valid (N, h, w) bool) -> (class probabilities (N, h, w, K), present (N, K) bool or None)` function
works, e.g. a stand-in in tests. Windows of one shape run in batches of `batch` on the device
(sharded over the local devices); each is padded (bottom, right) only to the network's multiple, and
`valid` marks the image's own pixels.
"""
import dataclasses
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hvl_jax.common import config_tree
from hvl_jax.common import sharding
from hvl_jax.data import transforms
from hvl_jax.models import hvl
from hvl_jax.models import semantic_inference
from hvl_jax.models import zero_shot
from hvl_jax.models.backbones import clip as clip_lib

PROTOCOLS = ('zegclip_sliding_window', 'sliding_window', 'whole')


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
  """`inference`: how a class map is made (SemiVL's geometry; the module docstring).

  mode: 'query_argmax' | 'mask2former' (`semantic_inference`); protocol: one of PROTOCOLS
  ('zegclip_sliding_window' for VOC and ADE20K with short_side 512, COCO with short_side 0;
  'sliding_window' for Cityscapes; 'whole'); short_side: 0 = the native size; stride: the window
  step in pixels (0 = 2/3 of the crop); window_batch: windows per device call (rounded up to a
  multiple of the local devices); max_side: a long side above it is resized down to it and the
  class map back up (0 = 4 x data.crop_size); class_names: the names --mode predict and the
  `open_vocabulary` evaluation query, in label order (open vocabulary,
  hvl_jax/inference/open_vocabulary.py); () = the training classes only.
  """
  mode: str = 'query_argmax'
  protocol: str = 'zegclip_sliding_window'
  short_side: int = 512
  stride: int = 426
  window_batch: int = 8
  max_side: int = 0
  class_names: Tuple[str, ...] = ()
Box = Tuple[int, int, int, int]     # (y1, y2, x1, x2)


def window_boxes(height: int, width: int, crop: int, stride: int) -> List[Box]:
  """SemiVL's `zegclip_sliding_window` (mmseg's slide inference) windows.

  Per axis max(n - crop + stride - 1, 0) // stride + 1 windows at multiples of the stride, the
  last moved back to end flush with the edge; a window is smaller than the crop where the image is.
  """
  def starts(n):
    count = max(n - crop + stride - 1, 0) // stride + 1
    ends = [min(i * stride + crop, n) for i in range(count)]
    return [(max(e - crop, 0), e) for e in ends]

  return [(y1, y2, x1, x2) for y1, y2 in starts(height) for x1, x2 in starts(width)]


def sliding_window_boxes(height: int, width: int, crop: int, stride: int) -> List[Box]:
  """UniMatch's `sliding_window` windows: starts 0, stride, ... below the edge, each cut at it."""
  span = lambda n: [(a, min(n, a + crop)) for a in range(0, n, stride)]
  return [(y1, y2, x1, x2) for y1, y2 in span(height) for x1, x2 in span(width)]


def align_corners_weights(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) float32: linear interpolation along one axis with corners aligned."""
  src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
  lo = np.minimum(np.floor(src).astype(int), n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  m = np.zeros((n_out, n_in), np.float64)
  np.add.at(m, (np.arange(n_out), lo), 1 - (src - lo))
  np.add.at(m, (np.arange(n_out), hi), src - lo)
  return m.astype(np.float32)


def resize_rows(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """x (h, w, C) -> (len(rows), len(cols), C) with the interpolation matrices rows (H', h) and
  cols (W, w), as two BLAS matmuls."""
  (h, w, c), out_h = x.shape, rows.shape[0]
  y = (rows @ x.astype(np.float32).reshape(h, w * c)).reshape(out_h, w, c)
  return (y.transpose(0, 2, 1) @ cols.T).transpose(0, 2, 1)


def resize_align_corners(x: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
  """Bilinear resize of (h, w, C) to size (H, W) with corners aligned (PyTorch's
  `interpolate(mode='bilinear', align_corners=True)`)."""
  (h, w, _), (out_h, out_w) = x.shape, size
  return resize_rows(x, align_corners_weights(h, out_h), align_corners_weights(w, out_w))


def resized_argmax(x: np.ndarray, size: Tuple[int, int], band: int = 64) -> np.ndarray:
  """(H, W) int32 argmax of `resize_align_corners(x, size)`, computed `band` output rows at a
  time, so that only the class map is ever held at the output size."""
  (h, w, _), (out_h, out_w) = x.shape, size
  rows, cols = align_corners_weights(h, out_h), align_corners_weights(w, out_w)
  out = np.empty(size, np.int32)
  for lo in range(0, out_h, band):
    out[lo:lo + band] = resize_rows(x, rows[lo:lo + band], cols).argmax(-1)
  return out


class Prediction(NamedTuple):
  """classes (H, W) int32 at the image's size: the argmax of the probabilities (h, w, K) float32
  (the windows' class probabilities averaged where they overlap, at the size the image was
  predicted at, `Predictor.inference_size`) resized bilinearly (corners aligned) to (H, W);
  present (K,) bool, the classes the gating kept in any window (None without gating)."""
  classes: np.ndarray
  present: Optional[np.ndarray]
  probabilities: Optional[np.ndarray] = None


def process_local(tree):
  """Arrays of a tree as this process's own copies: evaluation runs per process, on its share
  of the images, so parameters sharded or replicated over every process's devices are gathered."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(lambda x: x if getattr(x, 'is_fully_addressable', True) else
                      multihost_utils.process_allgather(x, tiled=True), tree)


def network_scores(model: hvl.HVL, mode: str, mesh: Optional[Mesh] = None,
                   seen: Optional[np.ndarray] = None):
  """(prepare, scores) of the network.

  prepare(params) -> (params, text queries); scores(prepared, images (N, h, w, 3) uint8, valid (N,
  h, w) bool) -> (class probabilities (N, h, w, K) of the last DQTD layer under `mode`
  (`semantic_inference.class_probabilities`), present (N, K) or None), the batch sharded over `mesh`
  when given. `seen` (K,) ints: the training class of each of the model's classes, -1 for a new one
  (open-vocabulary inference, `semantic_inference.open_vocabulary_logits`).
  """

  def text_queries(params):
    return model.apply({'params': params}, method=hvl.HVL.text_queries)

  def scores(prepared, images, valid):
    params, text = prepared
    out = model.apply({'params': params}, clip_lib.normalize_images(images), text=text, valid=valid,
                      every_layer_rows=0)
    cls, masks = out['predictions'][-1]
    if seen is not None:
      cls = semantic_inference.open_vocabulary_logits(cls, seen, model.cfg.num_levels,
                                                      out['relevance'])
    return semantic_inference.upsampled_class_probabilities(cls, masks, images.shape[1:3],
                                                            mode), out['present']

  return jit_prepare_and_scores(text_queries, scores, mesh)


def jit_prepare_and_scores(text_fn, scores, mesh: Optional[Mesh]):
  """(prepare, scores) jitted: prepare(params) -> (process-local params, text_fn(params));
  scores with its image batch sharded over `mesh` when given (prepared values replicated)."""
  text_fn = jax.jit(text_fn)

  def prepare(params):
    params = process_local(params)
    return params, text_fn(params)

  if mesh is None:
    return prepare, jax.jit(scores)
  replicated = NamedSharding(mesh, PartitionSpec())
  batch = sharding.batch_sharding(mesh)
  scores_fn = jax.jit(scores, in_shardings=(replicated, batch, batch), out_shardings=replicated)
  return (lambda params: jax.device_put(prepare(params), replicated)), scores_fn


def inference_config(config) -> InferenceConfig:
  return config_tree.build(InferenceConfig, config.inference, 'inference')


def geometry(config, inf: Optional[InferenceConfig] = None) -> dict:
  """The Predictor's geometry from the config: crop (data.crop_size), and inference's protocol,
  short_side, stride (0 = 2/3 of the crop) and max_side (0 = 4 x the crop); `inf` is the
  config's `inference_config` where the caller has it."""
  inf, crop = inf or inference_config(config), config.data.crop_size
  return dict(crop=crop, stride=inf.stride or int(crop * 2 / 3),
              protocol=inf.protocol, short_side=inf.short_side, max_side=inf.max_side or 4 * crop)


def zero_shot_scores(model: hvl.HVL, mesh: Optional[Mesh] = None):
  """(prepare, scores) of the frozen CLIP alone, the zero-shot baseline: per-pixel softmax over
  the classes of the reference encoder's dense (MaskCLIP) features against the fixed-template
  text embeddings t^CLIP, upsampled bilinearly to the window. Same interface as `network_scores`."""

  def t_clip(params):
    return model.apply({'params': params}, method=hvl.HVL.fixed_text_embeddings)

  def scores(prepared, images, valid):
    del valid
    params, text = prepared

    def probs(module):
      dense = module.reference_features(clip_lib.normalize_images(images))['dense'].astype(
          jnp.float32)
      return zero_shot.pixel_class_probs(dense, text, jnp.exp(module.logit_scale))

    p = nn.apply(probs, model)({'params': params})
    return jax.image.resize(p, (p.shape[0],) + images.shape[1:3] + (p.shape[-1],), 'bilinear'), None

  return jit_prepare_and_scores(t_clip, scores, mesh)


class Predictor:
  """Class maps from a scores function under one of the PROTOCOLS (see the module docstring).

  Attributes:
    scores: (prepared, images (N, h, w, 3) uint8, valid (N, h, w) bool) -> (scores (N, h, w, K),
      present (N, K) bool or None).
    num_classes: K.
    crop, stride: window size and step.
    protocol: one of PROTOCOLS.
    short_side: 'zegclip_sliding_window' resizes the image's short side to this first (0 = not).
    max_side: a larger long side (after that) is resized down to this (0 = no limit).
    pad_multiple: windows (and whole images) are padded to a multiple of this.
    batch: windows per call of `scores` (the last batch is padded, so shapes stay static).
    prepare: params -> what `scores` takes (default: the params themselves).
  """

  def __init__(self, scores: Callable, *, num_classes: int, crop: int, stride: int,
               protocol: str = 'zegclip_sliding_window', short_side: int = 0, max_side: int = 0,
               pad_multiple: int = 1, batch: int = 1, prepare: Optional[Callable] = None):
    if protocol not in PROTOCOLS:
      raise ValueError(f'inference.protocol must be one of {PROTOCOLS}, got {protocol!r}')
    if batch < 1:
      raise ValueError(f'inference.window_batch must be >= 1, got {batch}')
    if stride < 1 and protocol != 'whole':
      raise ValueError(f'inference.stride must be >= 1 pixel, got {stride}')
    self.scores, self.num_classes, self.crop, self.stride = scores, num_classes, crop, stride
    self.protocol, self.short_side, self.max_side = protocol, short_side, max_side
    self.pad_multiple, self.batch = pad_multiple, batch
    self.prepare = prepare or (lambda params: params)

  @classmethod
  def from_config(cls, config, model: hvl.HVL, zero_shot_baseline: bool = False,
                  seen: Optional[np.ndarray] = None) -> 'Predictor':
    """The network's predictor of the model's classes under `geometry(config)` (or, with
    `zero_shot_baseline`, its frozen CLIP's, `zero_shot_scores`), windows in batches of
    inference.window_batch (rounded up to a multiple of the local devices, over which each batch
    is sharded); `seen` as in `network_scores`."""
    inf = inference_config(config)
    devices = jax.local_devices()
    batch = -(-inf.window_batch // len(devices)) * len(devices)
    windowed = inf.protocol != 'whole'
    # Whole images come one at a time: nothing to shard.
    mesh = sharding.make_mesh(devices) if windowed and len(devices) > 1 else None
    prepare, scores = (zero_shot_scores(model, mesh) if zero_shot_baseline
                       else network_scores(model, inf.mode, mesh, seen))
    # the coarsest pyramid level halves the token grid
    return cls(scores, num_classes=model.cfg.num_classes, **geometry(config, inf),
               pad_multiple=2 * model.cfg.clip.patch_size, batch=batch if windowed else 1,
               prepare=prepare)

  def describe(self) -> dict:
    """The geometry, as the eval json records it (the fields the protocol uses)."""
    if self.protocol == 'whole':
      return dict(protocol=self.protocol, pad_multiple=self.pad_multiple, max_side=self.max_side)
    out = dict(protocol=self.protocol, crop=self.crop, stride=self.stride, max_side=self.max_side)
    if self.protocol == 'zegclip_sliding_window':
      out['short_side'] = self.short_side
    return out

  @property
  def short_side_resized(self) -> bool:
    return self.protocol == 'zegclip_sliding_window' and self.short_side > 0

  def protocol_size(self, height: int, width: int) -> Tuple[int, int]:
    """The (h, w) the protocol predicts an image of this size at (after the short-side resize)."""
    return transforms.short_side_size(
        height, width, self.short_side) if self.short_side_resized else (height, width)

  def inference_size(self, height: int, width: int) -> Tuple[int, int]:
    """`protocol_size`, its long side brought down to max_side where it is longer."""
    h, w = self.protocol_size(height, width)
    return transforms.long_side_size(
        h, w, self.max_side) if self.max_side and max(h, w) > self.max_side else (h, w)

  def capped(self, height: int, width: int) -> bool:
    """Whether an image of this size exceeds max_side (and is predicted smaller)."""
    return self.protocol_size(height, width) != self.inference_size(height, width)

  def limit_note(self) -> str:
    """What happens to a photo above max_side, in a user's words."""
    after = ' after the short-side resize' if self.short_side_resized else ''
    return (
        f'a photo whose long side{after} exceeds {self.max_side} px is segmented at '
        f'{self.max_side} '
        f''
        f''
        f''
        f'px '
        'and its class map resized back to the photo (inference.max_side)')

  def boxes(self, height: int, width: int) -> List[Box]:
    if self.protocol == 'whole':
      return [(0, height, 0, width)]
    if self.protocol == 'sliding_window':
      return sliding_window_boxes(height, width, self.crop, self.stride)
    return window_boxes(height, width, self.crop, self.stride)

  def window_scores(self, prepared: Any, windows: List[Tuple[int, np.ndarray, Box]]):
    """Scores (h, w, K) of each (image index, image, box) window and {image index: the union of its
    windows' present classes}; windows of one padded shape go through `scores` together, in batches
    of `batch`, whichever images they come from."""
    m = self.pad_multiple
    shape_of = lambda b: (-(-(b[1] - b[0]) // m) * m, -(-(b[3] - b[2]) // m) * m)
    out, present = [None] * len(windows), {}
    for shape in sorted({shape_of(b) for _, _, b in windows}):
      group = [i for i, (_, _, b) in enumerate(windows) if shape_of(b) == shape]
      pixels = np.zeros((len(group),) + shape + (3,), np.uint8)
      valid = np.zeros((len(group),) + shape, bool)
      for j, i in enumerate(group):
        _, image, (y1, y2, x1, x2) = windows[i]
        pixels[j, :y2 - y1, :x2 - x1] = image[y1:y2, x1:x2]
        valid[j, :y2 - y1, :x2 - x1] = True
      rest = -len(group) % self.batch       # static batch shapes: repeat the last window
      pixels = np.concatenate([pixels, np.repeat(pixels[-1:], rest, axis=0)])
      valid = np.concatenate([valid, np.repeat(valid[-1:], rest, axis=0)])
      for lo in range(0, len(pixels), self.batch):
        s, p = self.scores(prepared, pixels[lo:lo + self.batch], valid[lo:lo + self.batch])
        s = np.asarray(s)
        p = None if p is None else np.asarray(p)
        for j in range(lo, min(lo + self.batch, len(group))):
          k, _, (y1, y2, x1, x2) = windows[group[j]]
          out[group[j]] = s[j - lo, :y2 - y1, :x2 - x1]
          if p is not None:
            present[k] = present.get(k, False) | p[j - lo]
    return out, present

  def predict(self, prepared: Any, image: np.ndarray) -> Prediction:
    """image (H, W, 3) uint8 -> Prediction; `prepared` from `prepare(params)`."""
    return self.predict_many(prepared, [image])[0]

  def predict_many(self, prepared: Any, images: Sequence[np.ndarray]) -> List[Prediction]:
    """Images (H_i, W_i, 3) uint8 of any sizes -> their Predictions, the windows of all of them
    batched together."""
    inputs = []
    for image in images:
      protocol_size, (h, w) = self.protocol_size(*image.shape[:2]), self.inference_size(
          *image.shape[:2])
      if (h, w) != image.shape[:2]:    # the limit by area interpolation, which does not alias
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if (h, w) != protocol_size
                           else cv2.INTER_LINEAR)
      inputs.append(image)
    boxes = [self.boxes(*image.shape[:2]) for image in inputs]
    scores, present = self.window_scores(
        prepared, [(k, image, b) for k, (image, bs) in enumerate(zip(inputs, boxes)) for b in bs])
    out, at = [], 0
    for k, (original, image, image_boxes) in enumerate(zip(images, inputs, boxes)):
      ih, iw = image.shape[:2]
      acc = np.zeros((ih, iw, self.num_classes), np.float32)
      count = np.zeros((ih, iw, 1), np.float32)
      for (y1, y2, x1, x2), s in zip(image_boxes, scores[at:at + len(image_boxes)]):
        acc[y1:y2, x1:x2] += s
        count[y1:y2, x1:x2] += 1
      at += len(image_boxes)
      mean = acc / count
      classes = (mean.argmax(-1).astype(np.int32) if mean.shape[:2] == original.shape[:2]
                 else resized_argmax(mean, original.shape[:2]))
      out.append(Prediction(classes, present.get(k), mean))
    return out
