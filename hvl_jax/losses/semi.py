"""Semi-supervised terms on per-pixel class distributions (SemiVL/UniMatch structure)."""
import jax.numpy as jnp


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
