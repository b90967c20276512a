"""Sine position embeddings (DETR / Mask2Former `PositionEmbeddingSine`, normalize=True)."""
import functools
import math

import numpy as np


@functools.lru_cache(maxsize=None)
def sine_position_embedding(height: int, width: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
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
