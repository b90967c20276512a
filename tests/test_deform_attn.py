"""ms_deform_attn against an explicit numpy bilinear-sampling reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.ops.deform_attn import MSDeformAttn, ms_deform_attn, reference_points

SHAPES = ((5, 7), (3, 2), (1, 4))   # non-square levels, a 1-pixel-high one


def bilinear_zero_pad(img, x, y):
  """grid_sample(align_corners=False, padding zeros) of one (H, W, D) map at normalised (x, y)."""
  h, w, _ = img.shape
  px, py = x * w - 0.5, y * h - 0.5
  x0, y0 = int(np.floor(px)), int(np.floor(py))
  out = np.zeros(img.shape[-1])
  for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
    wgt = (1 - abs(px - cx)) * (1 - abs(py - cy))
    if 0 <= cx < w and 0 <= cy < h:
      out += wgt * img[cy, cx]
  return out


def numpy_reference(value, shapes, locs, attn):
  b, s, n, d = value.shape
  _, q, _, l, p, _ = locs.shape
  out = np.zeros((b, q, n, d))
  starts = np.cumsum([0] + [h * w for h, w in shapes])
  for bi in range(b):
    for lv, (h, w) in enumerate(shapes):
      level = value[bi, starts[lv]:starts[lv + 1]].reshape(h, w, n, d)
      for qi in range(q):
        for hi in range(n):
          for pi in range(p):
            x, y = locs[bi, qi, hi, lv, pi]
            out[bi, qi, hi] += attn[bi, qi, hi, lv, pi] * bilinear_zero_pad(level[:, :, hi], x, y)
  return out.reshape(b, q, n * d)


def make_inputs(rng, b=2, q=6, n=2, d=3, p=3, special=True):
  s = sum(h * w for h, w in SHAPES)
  value = rng.randn(b, s, n, d)
  locs = rng.uniform(-0.3, 1.3, (b, q, n, len(SHAPES), p, 2))   # includes outside [0, 1]
  if special:
    locs[0, 0, 0, :, 0] = 0.0       # exactly on borders
    locs[0, 0, 0, :, 1] = 1.0
    locs[0, 1, 1, 0, 2] = (0.5 / 7, 0.5 / 5)   # exactly a pixel centre
  attn = rng.rand(b, q, n, len(SHAPES), p)
  attn /= attn.sum(axis=(-1, -2), keepdims=True)
  return value, locs, attn


def test_forward_matches_numpy(rng):
  value, locs, attn = make_inputs(rng)
  ref = numpy_reference(value, SHAPES, locs, attn)
  out = jax.jit(ms_deform_attn, static_argnums=1)(
      jnp.float32(value), SHAPES, jnp.float32(locs), jnp.float32(attn))
  np.testing.assert_allclose(out, ref, atol=1e-5)
  chunked = ms_deform_attn(jnp.float32(value), SHAPES, jnp.float32(locs), jnp.float32(attn),
                           query_chunk=4)
  np.testing.assert_allclose(chunked, ref, atol=1e-5)


def test_gradients_match_finite_differences(rng):
  # Random locations (inside and outside the maps) lie away from the kinks of bilinear
  # interpolation almost surely, so central differences are valid there.
  value, locs, attn = make_inputs(rng, b=1, q=3, p=2, special=False)
  cot = rng.randn(1, 3, 6)
  f_np = lambda v, l, a: (numpy_reference(v, SHAPES, l, a) * cot).sum()
  f_jax = lambda v, l, a: (ms_deform_attn(v, SHAPES, l, a) * cot).sum()
  with jax.enable_x64(True):
    grads = jax.grad(f_jax, argnums=(0, 1, 2))(jnp.asarray(value), jnp.asarray(locs),
                                               jnp.asarray(attn))
  eps = 1e-6
  for arg, g in enumerate(grads):
    args = [value, locs, attn]
    flat = args[arg].ravel()
    for i in rng.choice(flat.size, 12, replace=False):
      plus, minus = [a.copy() for a in args], [a.copy() for a in args]
      plus[arg].flat[i] += eps
      minus[arg].flat[i] -= eps
      fd = (f_np(*plus) - f_np(*minus)) / (2 * eps)
      np.testing.assert_allclose(np.asarray(g).ravel()[i], fd, atol=1e-5, rtol=1e-4)


def test_bf16_accumulates_in_fp32(rng):
  value, locs, attn = make_inputs(rng, q=20, p=4)
  ref = numpy_reference(value, SHAPES, locs, attn)
  out = ms_deform_attn(jnp.bfloat16(value), SHAPES, jnp.float32(locs), jnp.float32(attn))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(out), ref, atol=0.05)


def test_vmap_and_shape_check(rng):
  value, locs, attn = make_inputs(rng)
  batched = jax.vmap(lambda v, l, a: ms_deform_attn(v[None], SHAPES, l[None], a[None])[0])(
      jnp.float32(value), jnp.float32(locs), jnp.float32(attn))
  np.testing.assert_allclose(batched, numpy_reference(value, SHAPES, locs, attn), atol=1e-5)
  with pytest.raises(ValueError, match='spatial_shapes'):
    ms_deform_attn(jnp.float32(value[:, 1:]), SHAPES, jnp.float32(locs), jnp.float32(attn))


def test_module_init_matches_deformable_detr():
  shapes = ((4, 4), (2, 2), (1, 1))
  s = sum(h * w for h, w in shapes)
  m = MSDeformAttn(dim=16, num_heads=4, num_levels=3, num_points=2)
  x = jnp.ones((1, s, 16))
  ref = jnp.asarray(reference_points(shapes))[None]
  params = m.init(jax.random.PRNGKey(0), x, ref, x, shapes)['params']
  bias = np.asarray(params['sampling_offsets']['bias']).reshape(4, 3, 2, 2)
  np.testing.assert_allclose(bias[0, 0, 0], [1, 0], atol=1e-6)     # head 0 points along +x
  np.testing.assert_allclose(bias[1, 2, 1], [0, 2],
                             atol=1e-6)  # head 1 along +y, point 2 at distance 2
  np.testing.assert_allclose(bias[3, 1, 0], [0, -1], atol=1e-6)
  assert not np.any(params['sampling_offsets']['kernel'])
  assert not np.any(params['attention_weights']['kernel'])
  out = m.apply({'params': params}, x, ref, x, shapes)
  assert out.shape == (1, s, 16)


def test_reference_points_are_pixel_centres():
  pts = reference_points(((2, 3),))
  np.testing.assert_allclose(pts[:3], [[1 / 6, 0.25], [0.5, 0.25], [5 / 6, 0.25]])


def test_custom_backward_matches_autodiff(rng):
  # The hand-written backward (used for 16-bit values) against JAX's derivative of the
  # forward, in float32 and with query chunks; for bf16 values the gradient has value's dtype.
  from hvl_jax.ops import deform_attn   # pylint: disable=import-outside-toplevel
  value, locs, attn = (jnp.float32(x) for x in make_inputs(rng, q=9, p=4))
  cot = jnp.float32(rng.randn(2, 9, 6))
  loss = lambda fn: (lambda v, l, a: (fn(v, SHAPES, l, a).astype(jnp.float32) * cot).sum())
  want = jax.grad(loss(deform_attn._ms_deform_attn), (0, 1, 2))(value, locs, attn)
  got = jax.jit(jax.grad(loss(deform_attn._ms_deform_attn_vjp), (0, 1, 2)))(value, locs, attn)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=2e-5)
  chunked = lambda v, s, l, a: ms_deform_attn(v, s, l, a, query_chunk=4)
  got = jax.grad(loss(chunked), (0, 1, 2))(value.astype(jnp.bfloat16), locs, attn)
  assert got[0].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(got[0]), want[0], atol=0.02)
  np.testing.assert_allclose(got[1], want[1], atol=0.05)
