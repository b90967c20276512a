"""DQTD: the masked-attention mask against numpy and scipy, prediction shapes, class-level queries
held at Q_aligned when query refinement is off, and the rows under deep supervision."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from hvl_jax.models import decoder
from hvl_jax.models.compute_settings import ComputeConfig
from hvl_jax.models.decoder import DQTD, DecoderConfig, attention_mask, mask_logits, resized

DIM = 16


def inputs(rng, b=2, k=3, levels=2):
  multi_scale = [jnp.asarray(rng.randn(b, s, s, DIM), jnp.float32) for s in (2, 4, 8)]
  return (jnp.asarray(rng.randn(b, levels * k, DIM), jnp.float32), multi_scale,
          jnp.asarray(rng.randn(b, 16, 16, DIM), jnp.float32))


def test_attention_mask_blocks_below_one_half_and_unblocks_empty_rows(rng):
  logits = rng.randn(1, 8, 8, 3).astype(np.float32)
  logits[..., 2] = -10.0            # query 2 blocked everywhere -> attends everywhere
  attend = np.asarray(attention_mask(jnp.asarray(logits)))
  assert attend.shape == (1, 1, 3, 64)
  expected = (1 / (1 + np.exp(-logits)) >= 0.5).reshape(1, 64, 3).transpose(0, 2, 1)
  expected[:, 2] = True
  np.testing.assert_array_equal(attend[:, 0], expected)


def test_predictions_and_query_refinement_switch(rng):
  k, levels, m = 3, 2, 4
  class_queries, multi_scale, mask_features = inputs(rng, k=k, levels=levels)
  for refine in (True, False):
    dec = DQTD(
        num_classes=k, num_levels=levels, dim=DIM, mask_dim=DIM,
        config=DecoderConfig(layers=3, heads=2, ffn_dim=32, instance_queries=m,
                             query_refinement=refine))
    params = dec.init(jax.random.PRNGKey(0), class_queries, multi_scale, mask_features)
    preds = dec.apply(params, class_queries, multi_scale, mask_features)
    assert len(preds) == 4
    for cls, masks in preds:
      assert cls.shape == (2, levels * k + m, k + 1) and masks.shape == (2, 16, 16, levels * k + m)
    first, last = preds[0][0][:, :levels * k], preds[-1][0][:, :levels * k]
    # Without refinement the class-level queries never change, so neither do their class logits.
    assert np.allclose(first, last, atol=1e-6) == (not refine)


def reference_attention_logits(masks, size):
  """Mask2Former's: the full-resolution logits (B, H4, W4, Q) bilinearly resized to the level
  (half-pixel centres, no antialiasing, like `F.interpolate(align_corners=False)`), by scipy."""
  b, h, w, q = masks.shape
  rows = np.clip((np.arange(size[0]) + 0.5) * h / size[0] - 0.5, 0, h - 1)
  cols = np.clip((np.arange(size[1]) + 0.5) * w / size[1] - 0.5, 0, w - 1)
  grid = np.stack(np.meshgrid(rows, cols, indexing='ij'))
  return np.stack([
      np.stack([
          ndimage.map_coordinates(np.asarray(masks[i, ..., j], np.float64), grid, order=1)
          for j in range(q)
      ], -1)
      for i in range(b)
  ])


@pytest.mark.parametrize('layers,scan,rows', [(6, True, 1), (6, True, 0), (6, False, 0),
                                              (4, True, None)])
def test_attention_masks_from_resized_features_and_the_rows_under_deep_supervision(
    layers, scan, rows, rng, monkeypatch):
  """The attention logits made from resized mask features are the full-resolution logits resized
  (scipy), so the masks attend where Mask2Former's do: with every row under deep supervision,
  each layer's prediction checked against the previous one's; with fewer rows, the last
  prediction equals the one made with every row (hard filtering, scanned rounds, a partial last
  round)."""
  k, levels = 3, 2
  class_queries, multi_scale, mask_features = inputs(rng, k=k, levels=levels)
  keep = jnp.asarray([[True, False, True], [True, True, True]])
  dec = DQTD(num_classes=k, num_levels=levels, dim=DIM, mask_dim=DIM,
             config=DecoderConfig(layers=layers, heads=2, ffn_dim=32, instance_queries=4),
             compute=ComputeConfig(scan=scan))
  params = dec.init(jax.random.PRNGKey(0), class_queries, multi_scale, mask_features, keep)
  decode = jax.jit(lambda r: dec.apply(params, class_queries, multi_scale, mask_features, keep, r),
                   static_argnums=0)
  every, some = decode(None), decode(rows)
  assert len(every) == len(some) == layers + 1
  n = 2 if rows is None else rows
  for (c, m), (cs, ms) in zip(every[:-1], some[:-1]):
    assert cs.shape[0] == ms.shape[0] == n
    np.testing.assert_allclose(ms, m[:n], rtol=1e-5, atol=1e-5)
  for a, b in zip(every[-1], some[-1]):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
  if scan:
    return
  # Unrolled and not jitted: each layer's attention logits are the previous prediction's
  # full-resolution logits resized to the level it attends (scipy), and block part of it.
  seen = []
  monkeypatch.setattr(decoder, 'attention_mask',
                      lambda logits: seen.append(logits) or attention_mask(logits))
  every = dec.apply(params, class_queries, multi_scale, mask_features, keep)
  assert len(seen) == layers
  for i, logits in enumerate(seen):
    expected = reference_attention_logits(np.asarray(every[i][1]), multi_scale[i % 3].shape[1:3])
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-3)
    assert 0.1 < float((logits < 0).mean()) < 0.9


def test_logits_of_resized_features_are_the_resized_logits(rng):
  """What the attention masks rest on: mask logits of bilinearly resized mask features equal the
  full-resolution logits resized (scipy), at each level's size."""
  features = jnp.asarray(rng.randn(2, 16, 16, DIM), jnp.float32)
  embed = jnp.asarray(rng.randn(2, 5, DIM), jnp.float32)
  full = np.asarray(mask_logits(embed, features))
  for size in ((2, 2), (4, 4), (8, 8)):
    got = mask_logits(embed, resized(features, size, jnp.float32))
    np.testing.assert_allclose(got, reference_attention_logits(full, size), rtol=1e-4, atol=1e-4)
