"""Bilinear point sampling of feature maps, patch pooling of pixel masks and L2 normalisation."""
import jax
import jax.numpy as jnp

from hvl_jax.ops.deform_attn import ms_deform_attn


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


def patch_majority(mask, patch: int):
  """(B, H, W) bool pixel mask -> (B, H/p, W/p) bool: True where at least half a patch is set."""
  b, h, w = mask.shape
  frac = mask.astype(jnp.float32).reshape(b, h // patch, patch, w // patch, patch).mean((2, 4))
  return frac >= 0.5


def point_sample(maps, coords):
  """Bilinear samples (grid_sample, align_corners=False, zero padding).

  Args:
    maps: (N, h, w, C).
    coords: (N, P, 2) normalised (x, y) in [0, 1].
  Returns:
    (N, P, C) in float32.
  """
  n, h, w, c = maps.shape
  value = maps.reshape(n, h * w, 1, c)
  locs = coords[:, :, None, None, None, :]
  ones = jnp.ones(coords.shape[:2] + (1, 1, 1), jnp.float32)
  return ms_deform_attn(value, ((h, w),), locs, ones).astype(jnp.float32)
