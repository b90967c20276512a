"""Semantic inference from the network's predictions: per-pixel class distributions,
and the class logits over other class names than the training ones (open vocabulary).

Functions of arrays only: cls_logits (B, Q, K+1) (the last column no-object) and mask_logits
(B, h, w, Q) as the DQTD returns them.
"""
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.models.decoder import FILTERED_LOGIT


def semantic_probs(cls_logits, mask_logits):
  """Per-pixel class distribution: sum_q softmax(cls)_q,c * sigmoid(mask)_q, normalised over c.

  cls_logits (B, Q, K+1), mask_logits (B, h, w, Q) -> (B, h, w, K).
  """
  p = jax.nn.softmax(cls_logits.astype(jnp.float32), -1)[..., :-1]
  seg = jnp.einsum('bqk,bhwq->bhwk', p, jax.nn.sigmoid(mask_logits.astype(jnp.float32)))
  return seg / jnp.maximum(seg.sum(-1, keepdims=True), 1e-6)


def class_probabilities(cls_logits, mask_logits, mode: str):
  """Per-pixel class probabilities (B, h, w, K) whose argmax is the prediction of `mode`.

  'mask2former': `semantic_probs`, sum_q softmax(cls)_q,c * sigmoid(mask)_q normalised over c.
  'query_argmax' (the paper): the query with the highest sigmoid(mask) * max_k p(k) wins the
  pixel; the pixel takes that query's class distribution (without no-object, renormalised), whose
  argmax is the query's class.
  """
  if mode == 'mask2former':
    return semantic_probs(cls_logits, mask_logits)
  if mode == 'query_argmax':
    p = jax.nn.softmax(cls_logits.astype(jnp.float32), -1)[..., :-1]     # (B, Q, K)
    m = jax.nn.sigmoid(mask_logits.astype(jnp.float32))                  # (B, h, w, Q)
    winner = (m * p.max(-1)[:, None, None, :]).argmax(-1)               # (B, h, w)
    p = p / jnp.maximum(p.sum(-1, keepdims=True), 1e-12)
    return jax.vmap(lambda p_b, w_b: p_b[w_b])(p, winner)
  raise ValueError(f"inference.mode must be 'query_argmax' or 'mask2former', got {mode!r}")


def open_vocabulary_logits(cls_logits, seen, num_levels: int, relevance):
  """Class logits over K' named classes from the class head's K+1 (training classes, no-object).

  A named training class takes that class's logit in every query's row, as closed-set inference
  does. A new class has no column in the head: it takes its own class-level queries only (each
  carries its fixed class), whose rows hold nothing but the class and no-object, with
  p(class) = s_k (1 - p(no-object)): the query's objectness (logsumexp of its K class logits
  against the no-object logit), weighted by the zero-shot relevance, since the head never
  classified a query of that class (docs/method.md, "Open-vocabulary inference").

  Args:
    cls_logits: (B, Q, K+1), Q = L*K' + M (level-major class queries, then instance queries).
    seen: (K',) ints, the training class of each named class, -1 for a new class.
    num_levels: L.
    relevance: (B, K') s_k (ones without gating: the objectness alone).
  Returns:
    (B, Q, K'+1) logits, the last no-object.
  """
  seen = np.asarray(seen)
  k_named, k_head = len(seen), cls_logits.shape[-1] - 1
  cls_logits = cls_logits.astype(jnp.float32)
  none = jnp.full(cls_logits.shape[:2] + (1,), FILTERED_LOGIT, jnp.float32)
  columns = np.where(seen >= 0, seen, k_head)  # new classes read the FILTERED_LOGIT column
  out = jnp.concatenate([cls_logits[..., :-1], none, cls_logits[..., -1:]],
                        -1)[..., list(columns) + [k_head + 1]]
  new = np.flatnonzero(seen < 0)
  if new.size == 0 or num_levels == 0:
    return out
  rows = (np.arange(num_levels)[:, None] * k_named + new[None]).ravel()  # the new classes' queries
  cols = np.tile(new, num_levels)
  objectness = jax.nn.logsumexp(cls_logits[:, rows, :-1], axis=-1)         # (B, L * new)
  out = out.at[:, rows, :-1].set(FILTERED_LOGIT)
  log_p = jnp.log(jnp.maximum(relevance[:, cols], 1e-12)) + objectness - jax.nn.logsumexp(
      cls_logits[:, rows], -1)
  out = out.at[:, rows, cols].set(log_p)
  return out.at[:, rows, -1].set(jnp.log1p(-jnp.minimum(jnp.exp(log_p), 1 - 1e-7)))


def upsampled_class_probabilities(cls_logits, mask_logits, out_hw: Tuple[int, int], mode: str):
  """Class probabilities (B, H, W, K) at the input size (mask logits upsampled bilinearly first)."""
  b, _, _, q = mask_logits.shape
  up = jax.image.resize(mask_logits.astype(jnp.float32), (b, *out_hw, q), 'bilinear')
  return class_probabilities(cls_logits, up, mode)


def predict_classes(cls_logits, mask_logits, out_hw: Tuple[int, int], mode: str):
  """Class map (B, H, W) at the input size."""
  return upsampled_class_probabilities(cls_logits, mask_logits, out_hw,
                                       mode).argmax(-1).astype(jnp.int32)
