"""Multi-scale deformable attention (Deformable DETR) in pure JAX.

Forward: each level is sampled with `jax.scipy.ndimage.map_coordinates(order=1,
mode='constant')`, i.e. bilinear interpolation with zero padding, exactly
`grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False)` at
2 * loc - 1 as in the reference PyTorch function of Deformable DETR, and the
samples are weighted and summed over levels and points. XLA fuses these
per-element gathers with the weighting; on an H200 this measured 4.4x (forward)
faster than gathering whole head-vector rows, with 0.24 instead of 2.16 GiB
(benchmarks/RESULTS.md). Samples are read in value's dtype (bf16 halves the
traffic) and weighted and summed in float32.

Backward: for 16-bit values, JAX's derivative of `map_coordinates` scatter-adds
in bf16 (one scalar scatter per corner and level), which measured 8.5x slower on
an H200 than this module's `jax.custom_vjp`: one gather of the four corner rows
(whole head vectors) for the location and weight gradients and one float32
scatter-add of all corner contributions into the (B, S, N, D) value gradient.
For float32 values JAX's derivative measured faster (2.37 vs 2.81 ms fwd+bwd at
the encoder's sizes) and is used.
"""
import functools
import math
from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SpatialShapes = Sequence[Tuple[int, int]]


def _bilinear(img, rows, cols):
  """img (H, W), rows/cols (...) pixel coordinates (pixel i at i) -> (...) with zero padding."""
  return jax.scipy.ndimage.map_coordinates(img, [rows, cols], order=1, mode='constant', cval=0.0)


# vmapped over channels (D), then heads (N, with per-head coordinates), then batch (B):
# level (B, N, D, H, W), rows/cols (B, Q, N, P) -> (B, D, Q, N, P).
_sample_level = jax.vmap(
    jax.vmap(jax.vmap(_bilinear, in_axes=(0, None, None)), in_axes=(0, 1, 1), out_axes=2))


def _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights):
  b, _, n, d = value.shape
  q = sampling_locations.shape[1]
  out = jnp.zeros((b, q, n, d), jnp.float32)
  start = 0
  for lv, (h, w) in enumerate(spatial_shapes):
    level = value[:, start:start + h * w].reshape(b, h, w, n, d).transpose(0, 3, 4, 1, 2)
    start += h * w
    # align_corners=False: normalised x maps to pixel coordinate x * W - 0.5.
    loc = sampling_locations[:, :, :, lv].astype(jnp.float32)                  # (B, Q, N, P, 2)
    sampled = jnp.moveaxis(_sample_level(level, loc[..., 1] * h - 0.5, loc[..., 0] * w - 0.5), 1,
                           -1)
    out = out + (sampled * attention_weights[:, :, :, lv, :, None].astype(jnp.float32)).sum(axis=3)
  return out.reshape(b, q, n * d).astype(value.dtype)


def bilinear_corners(spatial_shapes: SpatialShapes, sampling_locations):
  """The four bilinear corners of every sample, as rows of the flattened levels.

  Args:
    spatial_shapes: static tuple of L (H_l, W_l).
    sampling_locations: (..., L, P, 2) normalised (x, y).
  Returns:
    rows (..., L, P, 4) int32 indices into S = sum_l H_l * W_l (clipped into the level),
    weight (..., L, P, 4) bilinear weights, 0 for corners outside the level (zero padding),
    d_x, d_y (..., L, P, 4): derivatives of the weights with respect to the normalised x and y.
  """
  shapes = np.asarray(spatial_shapes, np.int32)
  h, w = shapes[:, 0, None, None], shapes[:, 1, None, None]                 # (L, 1, 1)
  start = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])[:, None, None]
  loc = sampling_locations.astype(jnp.float32)
  # align_corners=False: normalised x maps to pixel coordinate x * W - 0.5.
  x, y = loc[..., 0] * w[..., 0] - 0.5, loc[..., 1] * h[..., 0] - 0.5       # (..., L, P)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  dx, dy = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])                   # corner offsets
  cx = x0.astype(jnp.int32)[..., None] + dx
  cy = y0.astype(jnp.int32)[..., None] + dy
  wx, wy = jnp.where(dx, fx, 1 - fx), jnp.where(dy, fy, 1 - fy)             # (..., L, P, 4)
  inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
  rows = start + jnp.clip(cy, 0, h - 1) * w + jnp.clip(cx, 0, w - 1)
  weight = jnp.where(inside, wx * wy, 0.0)
  d_x = jnp.where(inside, (2 * dx - 1) * wy * w, 0.0)
  d_y = jnp.where(inside, (2 * dy - 1) * wx * h, 0.0)
  return rows, weight, d_x, d_y


def head_rows(value_shape, rows):
  """Flat indices of the (b, row, head) vectors of a (B, S, N, D) value viewed as (B*S*N, D).

  rows: (B, Q, N, ...) indices into S -> same shape, indices into B*S*N.
  """
  b, s, n, _ = value_shape
  bi = np.arange(b).reshape((b,) + (1,) * (rows.ndim - 1))
  ni = np.arange(n).reshape((1, 1, n) + (1,) * (rows.ndim - 3))
  return (bi * s + rows) * n + ni


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _ms_deform_attn_vjp(value, spatial_shapes, sampling_locations, attention_weights):
  return _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights)


def _ms_deform_attn_fwd(value, spatial_shapes, sampling_locations, attention_weights):
  out = _ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights)
  return out, (value, sampling_locations, attention_weights)


def _ms_deform_attn_bwd(spatial_shapes, residuals, grad_out):
  """Gradients from one gather of corner rows and one float32 scatter-add (16-bit values)."""
  value, locs, attn = residuals
  b, s, n, d = value.shape
  q = locs.shape[1]
  rows, weight, d_x, d_y = bilinear_corners(spatial_shapes, locs)           # (B, Q, N, L, P, 4)
  flat = head_rows(value.shape, rows)
  g = grad_out.reshape(b, q, n, 1, 1, 1, d).astype(jnp.float32)
  table = value.reshape(b * s * n, d)
  # <grad_out, corner value> per corner: the gather fuses into this reduction.
  dots = (table[flat].astype(jnp.float32) * g).sum(-1)                      # (B, Q, N, L, P, 4)
  a = attn.astype(jnp.float32)[..., None]
  grad_attn = (weight * dots).sum(-1)
  grad_locs = jnp.stack([(a * d_x * dots).sum(-1), (a * d_y * dots).sum(-1)], -1)
  grad_value = jnp.zeros((b * s * n, d), jnp.float32).at[flat.reshape(-1)].add(
      ((a * weight)[..., None] * g).reshape(-1, d))
  return (grad_value.reshape(value.shape).astype(value.dtype), grad_locs.astype(locs.dtype),
          grad_attn.astype(attn.dtype))


_ms_deform_attn_vjp.defvjp(_ms_deform_attn_fwd, _ms_deform_attn_bwd)


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
  core = _ms_deform_attn_vjp if jnp.dtype(value.dtype).itemsize < 4 else _ms_deform_attn
  q = sampling_locations.shape[1]
  if not query_chunk or query_chunk >= q:
    return core(value, spatial_shapes, sampling_locations, attention_weights)
  chunks = -(-q // query_chunk)
  pad = chunks * query_chunk - q

  def split(x):
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape(x.shape[0], chunks, query_chunk, *x.shape[2:]), 1, 0)

  out = jax.lax.map(lambda a: core(value, spatial_shapes, *a),
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
  """Deformable DETR's offset bias: head h points along angle 2 pi h / N, point p at distance p +
  1."""
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
