"""The per-step objective on a tiny config: every term finite with its gradient, every ablation
variant trains (jit fwd+bwd), 150 classes with a name listed twice, L_vl's hidden region."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax import objective
from hvl_jax.data import datasets
from tiny import finite_loss_and_grads, make_batch, tiny_config


@pytest.mark.slow
def test_full_semi_supervised_objective(rng):
  """Every term finite with its gradient; the weak view decoded apart and forward only gives the
  loss terms and gradients of decoding it with the trained rows."""
  batch = make_batch(rng)
  # Every pixel's pseudo-label counts, so the strong views' losses depend on the weak view.
  terms, grads = finite_loss_and_grads(tiny_config(**{'semi.conf_threshold': 0.0}), batch)
  for key in ('seg_seg', 'semi_s1', 'semi_s2', 'semi_fp', 'entropy_s1', 'div', 'topo', 'anchor',
              'vl_mask', 'vl_align', 'total'):
    assert key in terms
  assert float(terms['vl_mask']) > 0 and float(terms['vl_align']) > 0
  assert float(terms['semi_s1']) > 0 and float(terms['pseudo_confident_fraction']) == 1.0
  # Gradients reach the prompt through the frozen text encoder, and the heads.
  assert np.abs(np.asarray(grads['htqg']['prompt'])).max() > 0
  assert np.abs(np.asarray(grads['decoder']['heads']['class_embed']['kernel'])).max() > 0

  together_terms, together_grads = finite_loss_and_grads(
      tiny_config(**{'semi.conf_threshold': 0.0, 'semi.weak_view_forward_only': False}), batch)
  assert sorted(terms) == sorted(together_terms)
  for key, value in terms.items():
    np.testing.assert_allclose(float(value), float(together_terms[key]), rtol=1e-5, atol=1e-6, err_msg=key)
  scale = max(float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(together_grads))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6 * scale),
               grads, together_grads)


# The two ends of Table 3: random object queries (no HTQG, no PTRM), and textual queries with each
# other component switched off (no PTRM, no instance queries, no query refinement) at once.
@pytest.mark.slow
@pytest.mark.parametrize('overrides', [
    {'model.queries': 'random', 'model.ptrm': False},
    {'model.ptrm': False, 'model.instance_queries': 0, 'model.query_refinement': False},
], ids=['random_queries', 'htqg_only'])
def test_ablation_variants_train(rng, overrides):
  config = tiny_config(**overrides)
  finite_loss_and_grads(config, make_batch(rng, bl=2, bu=0))


def test_nearest_cells(rng):
  """Integer ratios take each cell's centre pixel; stride 3.5 takes the pixel under the centre."""
  x = jnp.asarray(rng.randn(2, 64, 48, 3))
  np.testing.assert_array_equal(objective.nearest_cells(x, (16, 12)), np.asarray(x)[:, 2::4, 2::4])
  y = np.arange(56)[None, :, None] * 100 + np.arange(56)[None, None, :]
  got = np.asarray(objective.nearest_cells(jnp.asarray(y), (16, 16)))
  assert got[0, 0, 0] == 101 and got[0, 1, 0] == 501 and got[0, 15, 15] == 5454   # pixels 1, 5, 54


@pytest.mark.slow
def test_150_classes_with_duplicate_names_give_finite_gradients(rng):
  with open(os.path.join(datasets.SHIPPED_SPLITS, 'classes.json')) as f:
    names = tuple(json.load(f)['ade'])
  names = names[:148] + (names[3], names[3])      # one name three times
  config = tiny_config(**{'data.num_classes': 150, 'data.background_classes': (), 'relevance.mode': 'dense',
                          'loss.max_masks': 32})
  terms, _ = finite_loss_and_grads(config, make_batch(rng), names)
  assert float(terms['anchor']) != 0


def test_vl_hides_the_ignore_band_around_the_class():
  labels = np.zeros((1, 40, 40), np.int32)
  labels[0, 10:20, 10:20] = 255          # the band around class 3
  labels[0, 12:18, 12:18] = 3
  labels[0, 30:35, 30:35] = 255          # another object's band, apart from class 3
  hidden = np.asarray(objective.hidden_region(jnp.asarray(labels), jnp.asarray([3]), 255))[0]
  expected = np.zeros((40, 40), bool)
  expected[10:20, 10:20] = True
  np.testing.assert_array_equal(hidden, expected)
