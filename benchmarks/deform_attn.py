r"""Benchmark: `ms_deform_attn` against a straightforward reference, same process and device.

  python -m benchmarks.deform_attn                 # real sizes (B=8, 512x512 input)
  python -m benchmarks.deform_attn --batch 1       # lighter, for 2 CPU cores

Real sizes: levels 64x64, 32x32, 16x16 (strides 8, 16, 32 of 512x512), 8 heads x
32 dims, 4 points, Q = S = 5376 (the encoder). The reference samples each level
with `jax.scipy.ndimage.map_coordinates(order=1, mode='constant')`, i.e. plain
bilinear interpolation with zero padding per (batch, head, channel).
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import compiled_memory_bytes, device_name, gib, time_fn
from hvl_jax.models.deform_attn import ms_deform_attn

SHAPES = ((64, 64), (32, 32), (16, 16))


def reference_ms_deform_attn(value, spatial_shapes, locs, attn):
  """Per level, per (batch, head, channel) bilinear sampling with map_coordinates."""
  b, s, n, d = value.shape
  q, l, p = locs.shape[1], locs.shape[3], locs.shape[4]
  out = jnp.zeros((b, q, n, d), jnp.float32)
  start = 0
  for lv, (h, w) in enumerate(spatial_shapes):
    level = value[:, start:start + h * w].reshape(b, h, w, n, d).transpose(0, 3, 4, 1, 2)  # (B,N,D,H,W)
    start += h * w
    # Pixel coordinates (row, col) with align_corners=False.
    rows = locs[:, :, :, lv, :, 1] * h - 0.5      # (B, Q, N, P)
    cols = locs[:, :, :, lv, :, 0] * w - 0.5
    sample = lambda img, r, c: jax.scipy.ndimage.map_coordinates(img, [r, c], order=1, mode='constant')
    per_channel = jax.vmap(sample, in_axes=(0, None, None))                    # over D
    per_head = jax.vmap(per_channel, in_axes=(0, 1, 1), out_axes=2)            # over N -> (D, Q, N, P)
    sampled = jax.vmap(per_head)(level, rows, cols)                              # (B, D, Q, N, P)
    sampled = jnp.moveaxis(sampled, 1, -1)                                       # (B, Q, N, P, D)
    out = out + (sampled * attn[:, :, :, lv, :, None]).sum(axis=3)
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


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--skip_reference', action='store_true')
  args = parser.parse_args()
  print(f'device {device_name()}; B={args.batch}, levels {SHAPES}, 8 heads x 32, 4 points, Q=S')
  for name in args.dtypes.split(','):
    dtype = jnp.dtype(name)
    value, locs, attn = make_inputs(args.batch, dtype)
    ours = measure(ms_deform_attn, value, locs, attn)
    line = (f'{name:9s} ms_deform_attn   fwd {ours["fwd"] * 1e3:8.2f} ms  fwd+bwd {ours["fwd_bwd"] * 1e3:8.2f} ms'
            f'  mem fwd {gib(ours["mem_fwd"])}  fwd+bwd {gib(ours["mem_fwd_bwd"])}')
    print(line, flush=True)
    if args.skip_reference:
      continue
    ref = measure(reference_ms_deform_attn, value, locs, attn)
    err = float(jnp.abs(ms_deform_attn(value, SHAPES, locs, attn).astype(jnp.float32)
                        - reference_ms_deform_attn(value, SHAPES, locs, attn).astype(jnp.float32)).max())
    print(f'{name:9s} reference        fwd {ref["fwd"] * 1e3:8.2f} ms  fwd+bwd {ref["fwd_bwd"] * 1e3:8.2f} ms'
          f'  mem fwd {gib(ref["mem_fwd"])}  fwd+bwd {gib(ref["mem_fwd_bwd"])}')
    print(f'{name:9s} speed-up vs reference: fwd {ref["fwd"] / ours["fwd"]:.2f}x, '
          f'fwd+bwd {ref["fwd_bwd"] / ours["fwd_bwd"]:.2f}x; max |diff| {err:.2e}', flush=True)


if __name__ == '__main__':
  main()
