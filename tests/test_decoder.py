"""DQTD: the masked-attention mask against numpy, prediction shapes, and class-level queries held
at Q_aligned when query refinement is off."""
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.models.decoder import DQTD, DecoderConfig, attention_mask

DIM = 16


def inputs(rng, b=2, k=3, levels=2):
  multi_scale = [jnp.asarray(rng.randn(b, s, s, DIM), jnp.float32) for s in (2, 4, 8)]
  return (jnp.asarray(rng.randn(b, levels * k, DIM), jnp.float32), multi_scale,
          jnp.asarray(rng.randn(b, 16, 16, DIM), jnp.float32))


def test_attention_mask_blocks_below_one_half_and_unblocks_empty_rows(rng):
  logits = rng.randn(1, 8, 8, 3).astype(np.float32)
  logits[..., 2] = -10.0            # query 2 blocked everywhere -> attends everywhere
  attend = np.asarray(attention_mask(jnp.asarray(logits), (8, 8)))
  assert attend.shape == (1, 1, 3, 64)
  expected = (1 / (1 + np.exp(-logits)) >= 0.5).reshape(1, 64, 3).transpose(0, 2, 1)
  expected[:, 2] = True
  np.testing.assert_array_equal(attend[:, 0], expected)


def test_predictions_and_query_refinement_switch(rng):
  k, levels, m = 3, 2, 4
  class_queries, multi_scale, mask_features = inputs(rng, k=k, levels=levels)
  for refine in (True, False):
    dec = DQTD(num_classes=k, num_levels=levels, dim=DIM, mask_dim=DIM,
               config=DecoderConfig(layers=3, heads=2, ffn_dim=32, instance_queries=m, query_refinement=refine))
    params = dec.init(jax.random.PRNGKey(0), class_queries, multi_scale, mask_features)
    preds = dec.apply(params, class_queries, multi_scale, mask_features)
    assert len(preds) == 4
    for cls, masks in preds:
      assert cls.shape == (2, levels * k + m, k + 1) and masks.shape == (2, 16, 16, levels * k + m)
    first, last = preds[0][0][:, :levels * k], preds[-1][0][:, :levels * k]
    # Without refinement the class-level queries never change, so neither do their class logits.
    assert np.allclose(first, last, atol=1e-6) == (not refine)
