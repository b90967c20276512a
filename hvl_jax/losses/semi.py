"""Semi-supervised terms on per-pixel class distributions (SemiVL/UniMatch structure), and the
pseudo-labels' accuracy where the unlabeled images' labels are known."""
import jax
import jax.numpy as jnp

from hvl_jax.common.constants import IGNORE_INDEX


def pseudo_label_loss(probs, pseudo_labels, confidence, valid, threshold):
  """Confidence-masked per-pixel CE, divided by all valid pixels.

  Args:
    probs: (B, H, W, K) predicted class distribution (normalised per pixel).
    pseudo_labels: (B, H, W) int32 targets.
    confidence: (B, H, W) teacher confidence.
    valid: (B, H, W) bool, False on padding/ignore.
    threshold: keep pixels with confidence >= threshold.
  """
  p = jnp.take_along_axis(probs, pseudo_labels[..., None], axis=-1)[..., 0]
  ce = -jnp.log(jnp.maximum(p.astype(jnp.float32), 1e-8))
  keep = (confidence >= threshold) & valid
  return jnp.where(keep, ce, 0.0).sum() / jnp.maximum(valid.sum(), 1)


def entropy_loss(probs, valid):
  """Mean per-pixel entropy of (B, H, W, K) distributions over valid pixels."""
  p = probs.astype(jnp.float32)
  ent = -(p * jnp.log(jnp.maximum(p, 1e-8))).sum(-1)
  return jnp.where(valid, ent, 0.0).sum() / jnp.maximum(valid.sum(), 1)


def pseudo_label_accuracy(pseudo_labels, confidence, labels, valid, threshold):
  """How right the pseudo-labels are, against labels (B, H, W) that no loss reads (the small
  world's unlabeled scenes keep theirs). Ignore pixels of `labels` are not counted.

  Returns {'pseudo_accuracy': over the confident valid pixels (those the loss trains on),
  'pseudo_accuracy_all': over every valid pixel}, without gradients (0 where none counts).
  """
  known = valid & (labels != IGNORE_INDEX)
  right = pseudo_labels == labels
  confident = known & (confidence >= threshold)
  share = lambda where: (right & where).sum() / jnp.maximum(where.sum(), 1)
  return jax.lax.stop_gradient(
      dict(pseudo_accuracy=share(confident), pseudo_accuracy_all=share(known)))
