"""Position embeddings: sine (DETR / Mask2Former `PositionEmbeddingSine`, normalize=True) and
the resize of learned ViT embeddings to other token grids."""
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def sine_position_embedding(height: int, width: int, dim: int,
                            temperature: float = 10000.0) -> np.ndarray:
  """(H, W, dim) embedding: first dim/2 channels encode y, the rest x (interleaved sin/cos)."""
  npf = dim // 2
  eps, scale = 1e-6, 2 * math.pi
  y = (np.arange(1, height + 1, dtype=np.float64) - 0.5) / (height + eps) * scale
  x = (np.arange(1, width + 1, dtype=np.float64) - 0.5) / (width + eps) * scale
  dim_t = temperature ** (2 * (np.arange(npf) // 2) / npf)

  def encode(v):
    p = v[:, None] / dim_t
    return np.stack([np.sin(p[:, 0::2]), np.cos(p[:, 1::2])], axis=2).reshape(len(v), npf)

  pos_y = np.broadcast_to(encode(y)[:, None, :], (height, width, npf))
  pos_x = np.broadcast_to(encode(x)[None, :, :], (height, width, npf))
  return np.concatenate([pos_y, pos_x], axis=-1).astype(np.float32)


def resize_position_embedding(pos: jax.Array, grid: Sequence[int],
                              new_grid: Sequence[int]) -> jax.Array:
  """Bicubic resize of patch position embeddings; the grid is kept exactly when unchanged.

  Args:
    pos: (1 + gh*gw, D) with the class position first.
    grid: (gh, gw) of `pos`.
    new_grid: (h, w) wanted.
  Returns:
    (1 + h*w, D).
  """
  if tuple(grid) == tuple(new_grid):
    return pos
  cls_pos, patch_pos = pos[:1], pos[1:].reshape(*grid, pos.shape[-1])
  patch_pos = jax.image.resize(patch_pos.astype(jnp.float32), (*new_grid, pos.shape[-1]),
                               method='bicubic', antialias=False).astype(pos.dtype)
  return jnp.concatenate([cls_pos, patch_pos.reshape(-1, pos.shape[-1])], axis=0)


def vit_tokens(images, patch_embed, cls_embedding, pos_embedding, grid: Sequence[int],
               patch_size: int, dtype):
  """ViT input tokens: [class, patches] plus the position embedding resized to the image's grid.

  Args:
    images: (B, H, W, 3), H and W divisible by `patch_size`.
    patch_embed: the patch convolution, (B, H, W, 3) -> (B, h, w, D).
    cls_embedding: (D,) class token; pos_embedding: (1 + gh*gw, D) on the pre-training `grid`.
  Returns:
    (B, 1 + h*w, D) tokens and the grid (h, w).
  """
  b, hh, ww, _ = images.shape
  if hh % patch_size or ww % patch_size:
    raise ValueError(f'image size {hh}x{ww} is not divisible by the patch size {patch_size}')
  patches = patch_embed(images.astype(dtype))
  h, w = patches.shape[1:3]
  patches = patches.reshape(b, h * w, -1)
  cls = jnp.broadcast_to(cls_embedding.astype(dtype), (b, 1, patches.shape[-1]))
  pos = resize_position_embedding(pos_embedding, grid, (h, w))
  return jnp.concatenate([cls, patches], axis=1) + pos.astype(dtype)[None], (h, w)
