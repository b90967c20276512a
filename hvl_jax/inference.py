"""Whole-image and sliding-window inference: image -> class map.

`Predictor.predict(prepared, image)` is what evaluation and prediction call, with
`prepared = predictor.prepare(params)` computed once per parameter set (for the network: the
text queries, which do not depend on the image). `Predictor.from_config` wraps the network; any
`scores(prepared, images (N, h, w, 3) uint8) -> (N, h, w, K)` function works, e.g. a stand-in in
tests. The windows of an image run in batches of `batch` on the device (sharded over the local
devices), and the host averages the class scores where windows overlap.
"""
from typing import Any, Callable, List, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hvl_jax import sharding
from hvl_jax.models import hvl
from hvl_jax.models.backbones import clip as clip_lib


def window_starts(length: int, crop: int, stride: int) -> List[int]:
  """Window offsets covering [0, length) with the last window flush with the end."""
  if length <= crop:
    return [0]
  starts = list(range(0, length - crop, stride)) + [length - crop]
  return sorted(set(starts))


def process_local(tree):
  """Arrays of a tree as this process's own copies: evaluation runs per process, on its share
  of the images, so parameters sharded or replicated over every process's devices are gathered."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(lambda x: x if getattr(x, 'is_fully_addressable', True) else
                      multihost_utils.process_allgather(x, tiled=True), tree)


def network_scores(model: hvl.HVL, mode: str, mesh: Optional[Mesh] = None):
  """(prepare, scores) of the network.

  prepare(params) -> (params, text queries); scores(prepared, images (N, h, w, 3) uint8) ->
  class scores (N, h, w, K) of the last DQTD layer, the batch sharded over `mesh` when given.
  """

  def text_queries(params):
    return model.apply({'params': params}, method=hvl.HVL.text_queries)

  def scores(prepared, images):
    params, text = prepared
    out = model.apply({'params': params}, clip_lib.normalize_images(images), text=text)
    cls, masks = out['predictions'][-1]
    return hvl.upsampled_class_scores(cls, masks, images.shape[1:3], mode)

  text_fn = jax.jit(text_queries)

  def prepare(params):
    params = process_local(params)
    return params, text_fn(params)

  if mesh is None:
    return prepare, jax.jit(scores)
  replicated = NamedSharding(mesh, PartitionSpec())
  scores_fn = jax.jit(scores, in_shardings=(replicated, sharding.batch_sharding(mesh)), out_shardings=replicated)
  return (lambda params: jax.device_put(prepare(params), replicated)), scores_fn


class Predictor:
  """Class maps from a scores function, over sliding windows or the whole (padded) image.

  Attributes:
    scores: (prepared, images (N, h, w, 3) uint8) -> (N, h, w, K) class scores.
    num_classes: K.
    crop, stride: window size and step (sliding).
    window: 'sliding' or 'whole' (the image padded to a multiple of `pad_multiple`).
    batch: windows per call of `scores` (the last batch is padded, so shapes stay static).
    prepare: params -> what `scores` takes (default: the params themselves).
  """

  def __init__(self, scores: Callable, *, num_classes: int, crop: int, stride: int, window: str = 'sliding',
               pad_multiple: int = 1, batch: int = 1, prepare: Optional[Callable] = None):
    if window not in ('sliding', 'whole'):
      raise ValueError(f"inference.window must be 'sliding' or 'whole', got {window!r}")
    if batch < 1:
      raise ValueError(f'inference.window_batch must be >= 1, got {batch}')
    self.scores, self.num_classes, self.crop, self.stride = scores, num_classes, crop, max(1, stride)
    self.window, self.pad_multiple, self.batch = window, pad_multiple, batch
    self.prepare = prepare or (lambda params: params)

  @classmethod
  def from_config(cls, config, model: hvl.HVL) -> 'Predictor':
    """The network's predictor: windows of data.crop_size at inference.stride_fraction of it, in
    batches of inference.window_batch (rounded up to a multiple of the local devices, over which
    each batch is sharded)."""
    crop, window = config.data.crop_size, config.inference.window
    devices = jax.local_devices()
    batch = -(-config.inference.window_batch // len(devices)) * len(devices)
    # Whole images come one at a time: nothing to shard.
    mesh = Mesh(np.asarray(devices), ('data',)) if window == 'sliding' and len(devices) > 1 else None
    prepare, scores = network_scores(model, config.inference.mode, mesh)
    return cls(scores, num_classes=config.data.num_classes, crop=crop,
               stride=int(crop * config.inference.stride_fraction), window=window,
               # the coarsest pyramid level halves the token grid
               pad_multiple=2 * model.cfg.clip.patch_size, batch=batch if window == 'sliding' else 1,
               prepare=prepare)

  def predict(self, prepared: Any, image: np.ndarray) -> np.ndarray:
    """image (H, W, 3) uint8 -> class map (H, W) int32; `prepared` from `prepare(params)`."""
    h, w = image.shape[:2]
    if self.window == 'whole':
      ph, pw = -h % self.pad_multiple, -w % self.pad_multiple
      padded = np.pad(image, ((0, ph), (0, pw), (0, 0)))
      return np.asarray(self.scores(prepared, padded[None])[0, :h, :w].argmax(-1), np.int32)
    crop = self.crop
    padded = np.pad(image, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)))
    ph, pw = padded.shape[:2]
    boxes = [(y, x) for y in window_starts(ph, crop, self.stride) for x in window_starts(pw, crop, self.stride)]
    windows = np.stack([padded[y:y + crop, x:x + crop] for y, x in boxes])
    rest = -len(boxes) % self.batch
    windows = np.concatenate([windows, np.repeat(windows[-1:], rest, axis=0)])   # static batch shapes
    scores = np.concatenate([np.asarray(self.scores(prepared, windows[i:i + self.batch]))
                             for i in range(0, len(windows), self.batch)])
    acc = np.zeros((ph, pw, self.num_classes), np.float32)
    count = np.zeros((ph, pw, 1), np.float32)
    for (y, x), s in zip(boxes, scores):
      acc[y:y + crop, x:x + crop] += s
      count[y:y + crop, x:x + crop] += 1
    return (acc / count)[:h, :w].argmax(-1).astype(np.int32)
