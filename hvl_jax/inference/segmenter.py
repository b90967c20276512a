"""A trained network as a Python object: images in, class maps out (scripts, notebooks, export).

  from hvl_jax import Segmenter
  seg = Segmenter.load('runs/mine')              # the workdir's config and newest checkpoint
  seg.class_names                                # ('background', 'sheep', ...)
  classes = seg.segment(image)                   # (H, W) int32 class ids
  probs = seg.probabilities(image)               # (H, W, K) float32
  maps = seg.segment([a, b, c])                  # a list: windows of all the images batched
  Segmenter.load('runs/mine', class_names=['background', 'sheep', 'goat'])   # open vocabulary

An image is an (H, W, 3) uint8 RGB array of any size (or (H, W) grayscale), a PIL image or a file
path (PIL images and files are read as `data.files` reads photos: EXIF orientation applied). The
geometry is the evaluation's (`predictor_lib.geometry`: windows of the crop, after the short-side
resize where the config has one), so `segment` gives what `--mode eval` scores. `export` lowers the
network on one window with `jax.export` (tools/export.py writes it to a file).
"""
import os
from typing import List, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from hvl_jax.common import config_io
from hvl_jax.common import state as state_lib
from hvl_jax.common import storage
from hvl_jax.data import datasets
from hvl_jax.data import files
from hvl_jax.inference import open_vocabulary
from hvl_jax.inference import predictor as predictor_lib
from hvl_jax.models import hvl

ImageLike = Union[np.ndarray, Image.Image, str, os.PathLike]


def as_rgb(image: ImageLike) -> np.ndarray:
  """(H, W, 3) uint8 RGB of an image argument (see the module docstring)."""
  if isinstance(image, (str, os.PathLike)):
    return files.read_image(os.fspath(image))
  if isinstance(image, Image.Image):
    return files.upright_rgb(image, 'the PIL image')
  array = np.asarray(image)
  if array.dtype != np.uint8:
    raise ValueError(
        f'an image array must be uint8 RGB in [0, 255], got {array.dtype} {array.shape}')
  if array.ndim == 2:
    array = np.repeat(array[..., None], 3, axis=-1)
  if array.ndim != 3 or array.shape[-1] != 3:
    raise ValueError(
        f'an image array must be (H, W, 3) RGB or (H, W) grayscale, got shape {array.shape}')
  return array


class Segmenter:
  """A network with its parameters and evaluation geometry (build with `load` or `from_config`).

  Attributes:
    config: the resolved config (open-vocabulary: with the names' class count).
    class_names: the K class names, in the order of the class ids and probabilities.
    predictor: the `predictor_lib.Predictor` that runs the windows.
    checkpoint: the step directory the parameters come from.
  """

  def __init__(self, config, model: hvl.HVL, params, class_names: Sequence[str],
               seen: Optional[np.ndarray] = None, checkpoint: str = ''):
    self.config, self.model, self.params = config, model, params
    self.class_names, self.seen, self.checkpoint = tuple(class_names), seen, checkpoint
    self.predictor = predictor_lib.Predictor.from_config(config, model, seen=seen)
    self.prepared = self.predictor.prepare(params)

  @classmethod
  def load(cls, workdir: str, checkpoint: Optional[str] = None,
           class_names: Optional[Sequence[str]] = None) -> 'Segmenter':
    """The network trained in `workdir` (its config_train.json), with the newest checkpoint of
    `<workdir>/checkpoints` or `checkpoint` (a checkpoint directory or one step's); `class_names`
    queries other names than the training classes (open vocabulary)."""
    config = config_io.read(storage.join(workdir, config_io.TRAINING_CONFIG))
    return cls.from_config(config, checkpoint or storage.join(workdir, 'checkpoints'), class_names)

  @classmethod
  def from_config(cls, config, checkpoint: str,
                  class_names: Optional[Sequence[str]] = None) -> 'Segmenter':
    """The network of `config` with the parameters of `checkpoint` (as `load`); without
    `class_names`, inference.class_names if the config has them, else the training classes."""
    config = datasets.resolved(config)
    names = datasets.class_names(config)
    model, clip = hvl.build_model(config, names)
    params, source = state_lib.restore_params(config, model, clip, checkpoint)
    class_names = tuple(class_names or config.inference.class_names)
    if not class_names:
      return cls(config, model, params, names, checkpoint=source)
    named = config.copy_and_resolve_references()
    with named.unlocked():
      named.inference.class_names = class_names
    ov = open_vocabulary.build(named, clip)
    return cls(ov.config, ov.model, params, ov.names, ov.seen, source)

  def predictions(self, images: Sequence[ImageLike]) -> List[predictor_lib.Prediction]:
    """`predictor_lib.Prediction`s of the images, their windows batched a predictor batch of images
    at a time."""
    arrays = [as_rgb(image) for image in images]
    step = max(1, self.predictor.batch)
    return [p for lo in range(0, len(arrays), step)
            for p in self.predictor.predict_many(self.prepared, arrays[lo:lo + step])]

  def segment(self, image: Union[ImageLike, Sequence[ImageLike]]):
    """(H, W) int32 class ids of an image (a list of them for a list)."""
    if isinstance(image, (list, tuple)):
      return [p.classes for p in self.predictions(image)]
    return self.predictions([image])[0].classes

  def probabilities(self, image: Union[ImageLike, Sequence[ImageLike]]):
    """(H, W, K) float32 class probabilities of an image at its size (a list of them for a list);
    their argmax is `segment`. H x W x K floats: `predictions` keeps them at the size the image
    is predicted at."""
    if not isinstance(image, (list, tuple)):
      return self.probabilities([image])[0]
    arrays = [as_rgb(a) for a in image]
    return [p.probabilities if p.probabilities.shape[:2] == a.shape[:2] else
            predictor_lib.resize_align_corners(p.probabilities, a.shape[:2])
            for a, p in zip(arrays, self.predictions(arrays))]

  def export(self, platforms: Sequence[str] = ('cpu', 'cuda')) -> jax.export.Exported:
    """The network on one window, parameters inside, lowered for `platforms` (no accelerator
    needed): (N, S, S, 3) float32 RGB in [0, 255], N symbolic -> (N, S, S, K) float32 class
    probabilities, S the crop. Every pixel is the image's (pad partial windows yourself)."""
    prepare, scores = predictor_lib.network_scores(self.model, self.config.inference.mode,
                                                   seen=self.seen)
    prepared = prepare(self.params)

    def probabilities(images):
      return scores(prepared, images, jnp.ones(images.shape[:3], bool))[0]

    s = self.config.data.crop_size
    n, = jax.export.symbolic_shape('N')
    return jax.export.export(jax.jit(probabilities), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct((n, s, s, 3), jnp.float32))
