r"""Benchmark: `ms_deform_attn` against a straightforward reference, same process and device.

  python -m benchmarks.deform_attn                 # real sizes (B=8, 512x512 input)
  python -m benchmarks.deform_attn --batch 1       # lighter, for 2 CPU cores

Real sizes: levels 64x64, 32x32, 16x16 (strides 8, 16, 32 of 512x512), 8 heads x
32 dims, 4 points, Q = S = 5376 (the encoder). The reference is the plain gather
formulation: the four corner rows (whole head vectors) of every sample are
gathered into one (B, Q, N, L*P*4, D) array, weighted and summed.
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import compiled_memory_bytes, device_name, gib, time_fn
from hvl_jax.models.deform_attn import ms_deform_attn

SHAPES = ((64, 64), (32, 32), (16, 16))


def reference_ms_deform_attn(value, spatial_shapes, locs, attn):
  """Plain gather of corner rows from the (B*N*S, D) value, then a weighted sum."""
  b, s, n, d = value.shape
  q = locs.shape[1]
  shapes = np.asarray(spatial_shapes)
  start = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])
  size_wh = jnp.asarray(shapes[:, ::-1], jnp.float32)                       # (L, 2) as (W, H)
  pix = locs * size_wh[:, None, :] - 0.5                                    # (B, Q, N, L, P, 2)
  lo = jnp.floor(pix)
  frac = pix - lo
  lo = lo.astype(jnp.int32)
  w_lim, h_lim = jnp.asarray(shapes[:, 1])[:, None], jnp.asarray(shapes[:, 0])[:, None]
  idx, wts = [], []
  for dy in (0, 1):
    for dx in (0, 1):
      cx, cy = lo[..., 0] + dx, lo[..., 1] + dy
      wgt = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
      inside = (cx >= 0) & (cx < w_lim) & (cy >= 0) & (cy < h_lim)
      idx.append(jnp.asarray(start)[:, None] + jnp.clip(cy, 0, h_lim - 1) * w_lim + jnp.clip(cx, 0, w_lim - 1))
      wts.append(jnp.where(inside, wgt, 0.0))
  idx = jnp.stack(idx, -1).reshape(b, q, n, -1)
  wts = (jnp.stack(wts, -1) * attn[..., None]).reshape(b, q, n, -1)
  rows = value.transpose(0, 2, 1, 3).reshape(b * n * s, d)
  base = (jnp.arange(b)[:, None] * n + jnp.arange(n)[None, :]) * s
  gathered = jnp.take(rows, idx + base[:, None, :, None], axis=0, mode='clip')    # (B, Q, N, K, D)
  out = (gathered.astype(jnp.float32) * wts[..., None]).sum(axis=3)
  return out.reshape(b, q, n * d).astype(value.dtype)


def make_inputs(batch, dtype, heads=8, head_dim=32, points=4, seed=0):
  s = sum(h * w for h, w in SHAPES)
  k = jax.random.split(jax.random.PRNGKey(seed), 3)
  value = jax.random.normal(k[0], (batch, s, heads, head_dim), dtype)
  locs = jax.random.uniform(k[1], (batch, s, heads, len(SHAPES), points, 2), jnp.float32, -0.1, 1.1)
  attn = jax.nn.softmax(jax.random.normal(k[2], (batch, s, heads, len(SHAPES) * points)), -1)
  return value, locs, attn.reshape(batch, s, heads, len(SHAPES), points)


def measure(impl, value, locs, attn):
  fwd = jax.jit(lambda v, l, a: impl(v, SHAPES, l, a))

  def loss(v, l, a):
    return jnp.sum(impl(v, SHAPES, l, a).astype(jnp.float32) ** 2)

  fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  return dict(fwd=time_fn(fwd, value, locs, attn), fwd_bwd=time_fn(fwd_bwd, value, locs, attn),
              mem_fwd=compiled_memory_bytes(fwd, value, locs, attn),
              mem_fwd_bwd=compiled_memory_bytes(fwd_bwd, value, locs, attn))


def report(label, name, m):
  print(f'{name:9s} {label:16s} fwd {m["fwd"] * 1e3:8.2f} ms  fwd+bwd {m["fwd_bwd"] * 1e3:8.2f} ms'
        f'  mem fwd {gib(m["mem_fwd"])}  fwd+bwd {gib(m["mem_fwd_bwd"])}', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--dtypes', default='float32,bfloat16')
  args = parser.parse_args()
  print(f'device {device_name()}; B={args.batch}, levels {SHAPES}, 8 heads x 32, 4 points, Q=S')
  for name in args.dtypes.split(','):
    value, locs, attn = make_inputs(args.batch, jnp.dtype(name))
    ours = measure(ms_deform_attn, value, locs, attn)
    report('ms_deform_attn', name, ours)
    ref = measure(reference_ms_deform_attn, value, locs, attn)
    report('plain gather', name, ref)
    err = float(jnp.abs(ms_deform_attn(value, SHAPES, locs, attn).astype(jnp.float32)
                        - reference_ms_deform_attn(value, SHAPES, locs, attn).astype(jnp.float32)).max())
    print(f'{name:9s} speed-up vs plain gather: fwd {ref["fwd"] / ours["fwd"]:.2f}x, '
          f'fwd+bwd {ref["fwd_bwd"] / ours["fwd_bwd"]:.2f}x; max |diff| {err:.2e}', flush=True)


if __name__ == '__main__':
  main()
