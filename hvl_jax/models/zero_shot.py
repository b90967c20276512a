"""Zero-shot CLIP classification: class-name prompts -> per-image and per-pixel probabilities.

Used for the HTQG relevance s_k of unlabeled images and usable on its own:

  clip = load_clip('openai/clip-vit-base-patch16')
  text = class_text_embeddings(clip, ['cat', 'dog'])
  probs = image_class_probs(clip.encode_image(images), text, clip.logit_scale)
"""
import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from hvl_jax.ops.sampling import l2_normalize

DEFAULT_TEMPLATE = 'a photo of a {}.'

# model.relevance.mode: 'dense' (max over pixels), 'global' (image embedding), 'crops' (max over
# the image and its crops, `crop_views`), 'all' (no gating, s_k = 1).
RELEVANCE_MODES = ('dense', 'global', 'crops', 'all')


@dataclasses.dataclass(frozen=True)
class RelevanceConfig:
  """How the network gates its class queries (`model.relevance`): s_k by `mode`; 'hard' gating
  filters the queries of classes with s_k < `threshold` (the paper's "irrelevant class queries
  are filtered"), 'soft' scales every query by s_k."""
  mode: str = 'dense'
  gating: str = 'hard'
  threshold: float = 0.5

  def __post_init__(self):
    if self.mode not in RELEVANCE_MODES:
      raise ValueError(f'model.relevance.mode must be one of {RELEVANCE_MODES}, got {self.mode!r}')
    if self.gating not in ('hard', 'soft'):
      raise ValueError(f"model.relevance.gating must be 'hard' or 'soft', got {self.gating!r}")
# (top, left, side) of the crops of `crop_views`, as fractions of the image: the four quarters
# and the four corner crops of 3/4 of the side.
CROPS = tuple((y, x, 0.5) for y in (0, 0.5) for x in (0, 0.5)) + tuple(
    (y, x, 0.75) for y in (0, 0.25) for x in (0, 0.25))


def crop_views(images):
  """(B, H, W, C) -> (1 + len(CROPS), B, H, W, C): the images and their CROPS, each resized
  (bilinear) to the full size, so that a small object fills a view as in a photo of it alone."""
  b, h, w, c = images.shape
  views = [images]
  for y, x, side in CROPS:
    top, left, ch, cw = int(y * h), int(x * w), int(side * h), int(side * w)
    views.append(jax.image.resize(images[:, top:top + ch, left:left + cw], (b, h, w, c),
                                  'bilinear'))
  return jnp.stack(views)


def class_text_embeddings(clip, class_names: Sequence[str], template: str = DEFAULT_TEMPLATE):
  """(K, E) L2-normalised text embeddings of `template.format(name)` per class."""
  ids = clip.tokenize([template.format(n) for n in class_names])
  return l2_normalize(clip.encode_text(ids))


def image_class_probs(image_embeds, text_embeds, logit_scale):
  """Per-image class probabilities.

  Args:
    image_embeds: (B, E) projected image features (unnormalised).
    text_embeds: (K, E) normalised class embeddings.
    logit_scale: CLIP's exp(logit_scale) (a scalar).
  Returns:
    (B, K) softmax over classes.
  """
  logits = logit_scale * l2_normalize(image_embeds) @ text_embeds.T
  return jax.nn.softmax(logits, axis=-1)


def pixel_class_probs(dense_features, text_embeds, logit_scale):
  """Per-pixel class probabilities from dense (MaskCLIP) features (B, h, w, E) -> (B, h, w, K)."""
  logits = logit_scale * jnp.einsum('bhwe,ke->bhwk', l2_normalize(dense_features), text_embeds)
  return jax.nn.softmax(logits, axis=-1)


def class_relevance(dense_features, image_embeds, text_embeds, logit_scale, mode: str = 'dense',
                    valid=None):
  """Zero-shot presence score per class in [0, 1] (B, K).

  'dense': max over pixels of the per-pixel softmax (over the `valid` (B, h, w) cells only,
  when given: padding is not part of the image); 'global': the image-level softmax.
  """
  if mode == 'dense':
    probs = pixel_class_probs(dense_features, text_embeds, logit_scale)
    if valid is not None:
      probs = jnp.where(valid[..., None], probs, 0.0)
    return probs.max(axis=(1, 2))
  if mode == 'global':
    return image_class_probs(image_embeds, text_embeds, logit_scale)
  raise ValueError(f"relevance.mode must be 'dense' or 'global', got {mode!r}")
