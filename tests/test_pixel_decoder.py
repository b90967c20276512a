"""Pixel decoder + PTRM: shapes, jit, bf16, PTRM effect and identity when off."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.models.compute_settings import ComputeConfig
from hvl_jax.models.decoder import DQTD, DecoderConfig
from hvl_jax.models.pixel_decoder import PixelDecoder, PixelDecoderConfig
from hvl_jax.ops.position import sine_position_embedding

DIM = 32


def pixel_decoder(layers, compute=ComputeConfig(), **kw):
  config = PixelDecoderConfig(layers=layers, heads=4, points=2, ffn_dim=64, ptrm_heads=4, **kw)
  return PixelDecoder(dim=DIM, mask_dim=DIM, config=config, compute=compute)


def features(rng, b, h, w, c=DIM):
  return {s: jnp.asarray(rng.randn(b, h // s, w // s, c), jnp.float32) for s in (4, 8, 16, 32)}


@pytest.mark.parametrize('hw,k', [((64, 64), 5), ((96, 64), 21)])
def test_shapes_under_jit(rng, hw, k):
  h, w = hw
  m = pixel_decoder(2)
  feats, q = features(rng, 2, h, w), jnp.asarray(rng.randn(2, 3, k, DIM), jnp.float32)
  params = jax.jit(m.init)(jax.random.PRNGKey(0), feats, q)
  out = jax.jit(m.apply)(params, feats, q)
  assert [x.shape for x in out['multi_scale']] == [(2, h // s, w // s, DIM) for s in (32, 16, 8)]
  assert out['mask_features'].shape == (2, h // 4, w // 4, DIM)
  assert out['queries'].shape == (2, 3, k, DIM)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(out))


@pytest.mark.slow
def test_bf16(rng):
  m = pixel_decoder(1, ComputeConfig(dtype='bfloat16'))
  feats, q = features(rng, 1, 64, 64), jnp.asarray(rng.randn(1, 3, 4, DIM), jnp.float32)
  params = jax.jit(m.init)(jax.random.PRNGKey(0), feats, q)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  out = m.apply(params, feats, q)
  assert out['mask_features'].dtype == jnp.bfloat16
  assert np.isfinite(np.asarray(out['mask_features'], np.float32)).all()


@pytest.mark.slow
def test_ptrm_refines_both_and_is_identity_when_off(rng):
  feats, q = features(rng, 2, 64, 64), jnp.asarray(rng.randn(2, 3, 5, DIM), jnp.float32)
  with_ptrm = pixel_decoder(2, ptrm=True)
  params = jax.jit(with_ptrm.init)(jax.random.PRNGKey(0), feats, q)['params']
  shared = {k: v for k, v in params.items() if not k.startswith('ptrm_')}
  assert len(shared) < len(params)
  on = with_ptrm.apply({'params': params}, feats, q)
  off = pixel_decoder(2, ptrm=False).apply({'params': shared}, feats, q)
  no_text = pixel_decoder(2, ptrm=False).apply({'params': shared}, feats, None)
  # Off: queries untouched and pixel features equal to a decoder without text.
  np.testing.assert_array_equal(off['queries'], q)
  for a, b in zip(off['multi_scale'], no_text['multi_scale']):
    np.testing.assert_array_equal(a, b)
  # On: both the queries and every level's features change.
  assert np.abs(np.asarray(on['queries'] - q)).max() > 1e-3
  for a, b in zip(on['multi_scale'], off['multi_scale']):
    assert np.abs(np.asarray(a - b)).max() > 1e-3
  # Queries only change through pixels: gradient of the refined queries w.r.t. the features.
  g = jax.grad(lambda f: with_ptrm.apply({'params': params}, f, q)['queries'].sum())(feats)
  assert np.abs(np.asarray(g[16])).max() > 0


def test_sine_position_embedding_matches_formula():
  pos = sine_position_embedding(3, 4, 8)
  # Channel 0 of the y half: sin(((row + 0.5) / 3) * 2 pi / 10000^0).
  np.testing.assert_allclose(pos[:, 0, 0], np.sin((np.arange(3) + 0.5) / 3 * 2 * np.pi), atol=1e-5)
  # Channel 4 (x half, first): sin(((col + 0.5) / 4) * 2 pi).
  np.testing.assert_allclose(pos[0, :, 4], np.sin((np.arange(4) + 0.5) / 4 * 2 * np.pi), atol=1e-5)
  # Channel 3: cos with dim_t = 10000^(2 * 1 / 4).
  np.testing.assert_allclose(pos[:, 0, 3], np.cos((np.arange(3) + 0.5) / 3 * 2 * np.pi / 100.0),
                             atol=1e-5)


@pytest.mark.slow
def test_scanned_layers_equal_unrolled(rng):
  """The pixel decoder's and the DQTD's scanned layers give the unrolled values and gradients
  (scanned with a rematerialisation policy that keeps the matmul outputs, unrolled with full
  rematerialisation)."""
  feats, q = features(rng, 2, 64, 64), jnp.asarray(rng.randn(2, 3, 4, DIM), jnp.float32)
  remat = lambda scan: 'dots_with_no_batch_dims_saveable' if scan else True
  pd = lambda scan: pixel_decoder(3, ComputeConfig(scan=scan), remat=remat(scan))
  dec = lambda scan: DQTD(
      num_classes=4, num_levels=3, dim=DIM, mask_dim=DIM, compute=ComputeConfig(scan=scan),
      config=DecoderConfig(instance_queries=5, heads=4, ffn_dim=64, layers=6, remat=remat(scan)))
  pd_params = pd(False).init(jax.random.PRNGKey(0), feats, q)
  px = pd(False).apply(pd_params, feats, q)
  args = (px['queries'].reshape(2, -1, DIM), px['multi_scale'], px['mask_features'])
  dec_params = dec(False).init(jax.random.PRNGKey(1), *args)

  def loss(pd_params, dec_params, scan):
    out = pd(scan).apply(pd_params, feats, q)
    preds = dec(scan).apply(dec_params, out['queries'].reshape(2, -1, DIM), out['multi_scale'],
                            out['mask_features'])
    return sum(jnp.sum(c ** 2) + jnp.sum(jnp.tanh(m)) for c, m in preds), preds

  (l0, p0), g0 = jax.value_and_grad(loss, (0, 1), has_aux=True)(pd_params, dec_params, False)
  (l1, p1), g1 = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True), static_argnums=2)(
      pd_params, dec_params, True)
  assert len(p1) == 7
  np.testing.assert_allclose(float(l1), float(l0), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p0)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
  # Up to float32 summation-order noise of the largest gradients (~1e3 here).
  scale = max(float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(g0))
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6 * scale)
