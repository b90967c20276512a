"""Multi-scale deformable attention (Deformable DETR) in pure JAX.

`ms_deform_attn` samples every level bilinearly with one flat row gather over
all levels, points and the four corners, and weights the rows by (bilinear
weight x attention weight). Memory grows linearly in queries x points; an
optional query chunking bounds it further. Semantics equal
`grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False)` at
2 * loc - 1, as in the reference PyTorch function of Deformable DETR.
"""
import functools
import math
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SpatialShapes = Sequence[Tuple[int, int]]


def level_start_index(spatial_shapes: SpatialShapes) -> np.ndarray:
  """(L,) offset of each level in the flattened value."""
  sizes = [h * w for h, w in spatial_shapes]
  return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)


def _corner_indices_and_weights(spatial_shapes, sampling_locations):
  """Flat value-row indices and bilinear weights of the 4 corners of every sample.

  Args:
    spatial_shapes: L static (H_l, W_l).
    sampling_locations: (B, Q, N, L, P, 2) normalised (x, y).
  Returns:
    idx: (B, Q, N, L, P, 4) int32 row index into the flattened (S,) of the level stack.
    w: (B, Q, N, L, P, 4) float32 bilinear weights, 0 for corners outside the map.
  """
  shapes = np.asarray(spatial_shapes, np.int32)             # (L, 2) as (H, W)
  hw = jnp.asarray(shapes[:, ::-1], jnp.float32)           # (L, 2) as (W, H)
  start = jnp.asarray(level_start_index(spatial_shapes))   # (L,)
  width = jnp.asarray(shapes[:, 1])[:, None]                # (L, 1)
  size = jnp.asarray(shapes[:, ::-1])[:, None, :]          # (L, 1, 2)
  # align_corners=False: pixel centres at (i + 0.5) / size.
  pix = sampling_locations.astype(jnp.float32) * hw[:, None, :] - 0.5   # (B, Q, N, L, P, 2)
  lo = jnp.floor(pix)
  frac = pix - lo
  lo = lo.astype(jnp.int32)
  idx, w = [], []
  for dy in (0, 1):
    for dx in (0, 1):
      cx, cy = lo[..., 0] + dx, lo[..., 1] + dy
      wx = frac[..., 0] if dx else 1.0 - frac[..., 0]
      wy = frac[..., 1] if dy else 1.0 - frac[..., 1]
      inside = (cx >= 0) & (cx < size[..., 0]) & (cy >= 0) & (cy < size[..., 1])
      row = start[:, None] + jnp.clip(cy, 0, size[..., 1] - 1) * width + jnp.clip(cx, 0, size[..., 0] - 1)
      idx.append(row)
      w.append(jnp.where(inside, wx * wy, 0.0))
  return jnp.stack(idx, -1), jnp.stack(w, -1)


# Rematerialised: the gathered corner rows (Q*N*L*P*4 x D, the largest intermediate by far)
# are recomputed in the backward pass instead of being kept as residuals.
@functools.partial(jax.checkpoint, static_argnums=(1,), policy=jax.checkpoint_policies.nothing_saveable)
def _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights):
  b, s, n, d = value.shape
  q = sampling_locations.shape[1]
  idx, w = _corner_indices_and_weights(spatial_shapes, sampling_locations)
  w = w * attention_weights.astype(jnp.float32)[..., None]                  # (B, Q, N, L, P, 4)
  # Rows of (B * N * S, D): each sample fetches one contiguous head vector.
  rows = value.transpose(0, 2, 1, 3).reshape(b * n * s, d)
  base = (jnp.arange(b)[:, None] * n + jnp.arange(n)[None, :]) * s           # (B, N)
  idx = idx.reshape(b, q, n, -1) + base[:, None, :, None]                     # (B, Q, N, K)
  gathered = jnp.take(rows, idx, axis=0, mode='clip')                        # (B, Q, N, K, D)
  # Multiply-and-reduce (not a batched matvec): XLA fuses it with the gather.
  out = (gathered.astype(jnp.float32) * w.reshape(b, q, n, -1, 1)).sum(axis=3)
  return out.reshape(b, q, n * d).astype(value.dtype)


def ms_deform_attn(value, spatial_shapes: SpatialShapes, sampling_locations, attention_weights,
                   query_chunk: int = 0):
  """Multi-scale deformable attention core.

  Args:
    value: (B, S, N, D) with S = sum_l H_l * W_l, each level flattened row-major.
    spatial_shapes: static tuple of L (H_l, W_l).
    sampling_locations: (B, Q, N, L, P, 2) normalised (x, y); outside [0, 1] reads zeros.
    attention_weights: (B, Q, N, L, P), already normalised.
    query_chunk: if > 0, process the queries in chunks of this size (bounds memory).
  Returns:
    (B, Q, N * D) in value's dtype (accumulation in float32).
  """
  spatial_shapes = tuple(tuple(int(v) for v in hw) for hw in spatial_shapes)
  if sum(h * w for h, w in spatial_shapes) != value.shape[1]:
    raise ValueError(f'value has S={value.shape[1]} rows but spatial_shapes {spatial_shapes} '
                     f'sum to {sum(h * w for h, w in spatial_shapes)}')
  q = sampling_locations.shape[1]
  if not query_chunk or query_chunk >= q:
    return _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights)
  chunks = -(-q // query_chunk)
  pad = chunks * query_chunk - q

  def split(x):
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape(x.shape[0], chunks, query_chunk, *x.shape[2:]), 1, 0)

  out = jax.lax.map(lambda a: _ms_deform_attn(value, spatial_shapes, *a),
                    (split(sampling_locations), split(attention_weights)))
  out = jnp.moveaxis(out, 0, 1).reshape(value.shape[0], chunks * query_chunk, -1)
  return out[:, :q]


def reference_points(spatial_shapes: SpatialShapes) -> np.ndarray:
  """(S, 2) normalised (x, y) pixel centres of every position of every level."""
  pts = []
  for h, w in spatial_shapes:
    y, x = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing='ij')
    pts.append(np.stack([x.ravel(), y.ravel()], -1))
  return np.concatenate(pts).astype(np.float32)


def offset_bias_init(num_heads: int, num_levels: int, num_points: int):
  """Deformable DETR's offset bias: head h points along angle 2 pi h / N, point p at distance p + 1."""
  def init(key, shape, dtype=jnp.float32):
    del key
    theta = np.arange(num_heads) * (2.0 * math.pi / num_heads)
    grid = np.stack([np.cos(theta), np.sin(theta)], -1)
    grid = grid / np.abs(grid).max(-1, keepdims=True)
    grid = np.tile(grid[:, None, None, :], (1, num_levels, num_points, 1))
    grid *= np.arange(1, num_points + 1)[None, None, :, None]
    return jnp.asarray(grid.reshape(shape), dtype)
  return init


class MSDeformAttn(nn.Module):
  """Multi-scale deformable attention module (Deformable DETR).

  Attributes:
    dim: model width.
    num_heads, num_levels, num_points: as in the paper (8, 3, 4 here).
    query_chunk: passed to `ms_deform_attn`.
  """
  dim: int = 256
  num_heads: int = 8
  num_levels: int = 3
  num_points: int = 4
  query_chunk: int = 0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, query, ref_points, value_in, spatial_shapes):
    """query (B, Q, C), ref_points (B|1, Q, 2) normalised, value_in (B, S, C) -> (B, Q, C)."""
    n, l, p = self.num_heads, self.num_levels, self.num_points
    if len(spatial_shapes) != l:
      raise ValueError(f'MSDeformAttn built for {l} levels got {len(spatial_shapes)}')
    b, nq, _ = query.shape
    xavier = nn.initializers.xavier_uniform()
    value = nn.Dense(self.dim, kernel_init=xavier, dtype=self.dtype, name='value_proj')(value_in)
    value = value.reshape(b, value.shape[1], n, self.dim // n)
    offsets = nn.Dense(n * l * p * 2, kernel_init=nn.initializers.zeros,
                       bias_init=offset_bias_init(n, l, p), dtype=self.dtype,
                       name='sampling_offsets')(query).reshape(b, nq, n, l, p, 2)
    attn = nn.Dense(n * l * p, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                    name='attention_weights')(query).reshape(b, nq, n, l * p)
    attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).reshape(b, nq, n, l, p)
    # Offsets are in pixels of each level.
    normalizer = jnp.asarray([[w, h] for h, w in spatial_shapes], jnp.float32)   # (L, 2)
    locs = (ref_points[:, :, None, None, None, :].astype(jnp.float32)
            + offsets.astype(jnp.float32) / normalizer[None, None, None, :, None, :])
    out = ms_deform_attn(value, spatial_shapes, locs, attn, self.query_chunk)
    return nn.Dense(self.dim, kernel_init=xavier, dtype=self.dtype, name='output_proj')(out)
