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

from benchmarks.harness import compiled_memory_bytes, device_name, gib, time_fn
from hvl_jax.ops import deform_attn

SHAPES = ((64, 64), (32, 32), (16, 16))


def reference_ms_deform_attn(value, spatial_shapes, locs, attn):
  """Plain gather of corner rows from the (B*S*N, D) value, then a weighted sum."""
  b, s, n, d = value.shape
  q = locs.shape[1]
  rows, weight, _, _ = deform_attn.bilinear_corners(spatial_shapes, locs)      # (B, Q, N, L, P, 4)
  flat = deform_attn.head_rows(value.shape, rows).reshape(b, q, n, -1)
  gathered = jnp.take(value.reshape(b * s * n, d), flat, axis=0)              # (B, Q, N, K, D)
  wts = (weight * attn[..., None]).reshape(b, q, n, -1)
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


IMPLEMENTATIONS = (
    ('ms_deform_attn', deform_attn.ms_deform_attn),
    # The library's forward with JAX's derivative, and with the hand-written backward.
    ('autodiff backward', deform_attn._ms_deform_attn),         # pylint: disable=protected-access
    ('custom backward', deform_attn._ms_deform_attn_vjp),       # pylint: disable=protected-access
    ('plain gather', reference_ms_deform_attn))


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--dtypes', default='float32,bfloat16')
  args = parser.parse_args()
  print(f'device {device_name()}; B={args.batch}, levels {SHAPES}, 8 heads x 32, 4 points, Q=S')
  for name in args.dtypes.split(','):
    value, locs, attn = make_inputs(args.batch, jnp.dtype(name))
    results = {}
    for label, impl in IMPLEMENTATIONS:
      results[label] = measure(impl, value, locs, attn)
      report(label, name, results[label])
    ours = results['ms_deform_attn']
    err = float(
        jnp.abs(
            deform_attn.ms_deform_attn(value, SHAPES, locs, attn).astype(jnp.float32) -
            reference_ms_deform_attn(value, SHAPES, locs, attn).astype(jnp.float32)).max())
    for label, ref in list(results.items())[1:]:
      print(f'{name:9s} ms_deform_attn over {label}: fwd {ref["fwd"] / ours["fwd"]:.2f}x, '
            f'fwd+bwd {ref["fwd_bwd"] / ours["fwd_bwd"]:.2f}x', flush=True)
    print(f'{name:9s} max |ms_deform_attn - plain gather| {err:.2e}', flush=True)


if __name__ == '__main__':
  main()
