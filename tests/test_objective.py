"""The per-step objective on a tiny config: every term finite with its gradient, the total as the
paper's sum of its parts, Table 4's removals, every ablation variant trains (jit fwd+bwd), 150
classes with a name listed twice, L_vl's hidden region, and the step without its unread work
against the joint formulation."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.data import datasets
from hvl_jax.models import hvl
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.training import objective
from tiny import assert_finite, build, finite_loss_and_grads, make_batch, tiny_config


# The terms only a batch with the unlabeled images' labels reports.
ACCURACIES = {'pseudo_accuracy', 'pseudo_accuracy_all'}


def paper_total(terms, config):
  """The total of the paper's section 3 written out (SemiVL's halves for the labeled and
  unlabeled halves of the batch); a removed term counts as 0."""
  t = lambda k: terms.get(k, 0.0)
  s, p, vl = config.loss.consistency, config.loss.prompt, config.loss.vision_language
  unlabeled = s.strong_weight * (t('semi_s1') + t('semi_s2')) + s.fp_weight * t('semi_fp')
  entropy = s.entropy_weight * (t('entropy_s1') + t('entropy_s2'))
  return ((t('seg_seg') + unlabeled) / 2 + entropy / 2
          + p.div * t('div') + p.weight * (t('topo') + t('anchor'))
          + vl.weight * (vl.align * t('vl_align') + vl.mask * t('vl_mask')))


@pytest.mark.slow
def test_the_full_objective_its_parts_and_a_zero_weight_removes_only_its_part(rng):
  """Every term finite with its gradient; the unlabeled images' own labels never reach the loss;
  the total is the paper's sum of the terms; Table 4's rows (L_prompt, L_mask, L_align weight 0)
  leave every other term as it was, and without L_mask the gradient is the sum of the other
  summands' gradients.

  One program serves the full objective and the sum without L_mask: L_mask's summand is scaled
  by an input, 1 or 0.
  """
  batch = make_batch(rng)
  key = jax.random.PRNGKey(1)
  # Every pixel's pseudo-label counts, so the strong views' losses depend on the weak view.
  objective_of = lambda **overrides: tiny_config(
      **{'loss.consistency.conf_threshold': 0.0, **overrides})
  config = objective_of()
  model, params = build(config)
  loss = objective.objective_config(config, model.cfg)

  def scaled_vl_mask(p, label_u, vl_mask_scale):
    """(the summands with L_mask's x vl_mask_scale, (summands, terms))."""
    parts, terms = objective.weighted_terms(model, p, batch._replace(label_u=label_u), key, loss)
    return sum(v * (vl_mask_scale if name == 'vl_mask' else 1.0)
               for name, v in parts.items()), (parts, terms)

  fn = jax.jit(jax.value_and_grad(scaled_vl_mask, has_aux=True))
  # The unlabeled images' own labels score the pseudo-labels and never reach the loss: with the
  # labels all c, for each class c in turn, the loss and its gradient stay the same, and the
  # accuracies of the K constant labelings add up to 1. Without labels, no accuracy is reported.
  labeled_as = lambda c: jnp.full(batch.valid_u.shape, c, jnp.int32)
  runs = [fn(params, labeled_as(c), 1.0) for c in range(config.data.num_classes)]
  (total, (parts, terms)), grads = runs[0]
  accuracies = []
  for (total_c, (_, terms_c)), grads_c in runs:
    np.testing.assert_allclose(float(total_c), float(total), rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-9),
        grads_c, grads)
    assert terms_c['pseudo_accuracy'] == terms_c[
        'pseudo_accuracy_all']  # threshold 0: all confident
    accuracies.append(float(terms_c['pseudo_accuracy']))
  np.testing.assert_allclose(sum(accuracies), 1.0, rtol=1e-6)
  _, unscored = jax.eval_shape(lambda p: objective.compute_loss(model, p, batch, key, loss), params)
  assert set(unscored) == set(terms) - ACCURACIES | {'total'}

  assert_finite(total, terms, grads)
  for name in ('seg_seg', 'semi_s1', 'semi_s2', 'semi_fp', 'entropy_s1', 'div', 'topo', 'anchor',
               'vl_mask', 'vl_align'):
    assert name in terms
  assert float(terms['vl_mask']) > 0 and float(terms['vl_align']) > 0
  assert float(terms['semi_s1']) > 0 and float(terms['pseudo_confident_fraction']) == 1.0
  # Gradients reach the prompt through the frozen text encoder, and the heads.
  assert np.abs(np.asarray(grads['htqg']['prompt'])).max() > 0
  assert np.abs(np.asarray(grads['decoder']['heads']['class_embed']['kernel'])).max() > 0
  assert 'vl_mask' in parts
  np.testing.assert_allclose(float(total), float(paper_total(terms, config)), rtol=1e-6)

  _, rest = fn(params, labeled_as(0), 0.0)
  for field, removed in [('loss.prompt.weight', {'topo', 'anchor'}),
                         ('loss.vision_language.mask', {'vl_mask'}),
                         ('loss.vision_language.align', {'vl_align'})]:
    without = objective_of(**{field: 0.0})
    loss_0 = objective.objective_config(without, model.cfg)
    fn_0 = lambda p, loss_0=loss_0: objective.compute_loss(model, p, batch, key, loss_0)
    if field == 'loss.vision_language.mask':
      (total_0, terms_0), grads_0 = jax.jit(jax.value_and_grad(fn_0, has_aux=True))(params)
    else:
      total_0, terms_0 = jax.jit(fn_0)(params)
    assert set(terms) - set(terms_0) == removed | ACCURACIES, field
    for k, v in terms_0.items():
      if k != 'total':
        np.testing.assert_allclose(float(v), float(terms[k]), rtol=1e-6, err_msg=f'{field}: {k}')
    np.testing.assert_allclose(float(total_0), float(paper_total(terms_0, without)), rtol=1e-6)
  scale = max(float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(rest))
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * scale),
      grads_0, rest)


# The two ends of Table 3: random object queries (no HTQG, no PTRM), and textual queries with each
# other component switched off (no PTRM, no instance queries, no query refinement) at once.
@pytest.mark.slow
@pytest.mark.parametrize('overrides', [
    {'model.queries': 'random', 'model.pixel_decoder.ptrm': False},
    {
        'model.pixel_decoder.ptrm': False, 'model.decoder.instance_queries': 0,
        'model.decoder.query_refinement': False
    },
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
  config = tiny_config(
      **{
          'data.num_classes': 150, 'data.background_classes': (), 'model.relevance.mode': 'dense',
          'loss.supervised.max_masks': 32
      })
  terms, _ = finite_loss_and_grads(config, make_batch(rng), names)
  assert float(terms['anchor']) != 0


def test_vl_hides_the_ignore_band_around_the_class():
  labels = np.zeros((1, 40, 40), np.int32)
  labels[0, 10:20, 10:20] = 255          # the band around class 3
  labels[0, 12:18, 12:18] = 3
  labels[0, 30:35, 30:35] = 255          # another object's band, apart from class 3
  hidden = np.asarray(objective.hidden_region(jnp.asarray(labels), jnp.asarray([3])))[0]
  expected = np.zeros((40, 40), bool)
  expected[10:20, 10:20] = True
  np.testing.assert_array_equal(hidden, expected)


def joint_forward(model, params, batch, vl_key, cfg, t_clip=None):
  """`objective.forward` as it was before the step's unread work was dropped (a transcription):
  t^CLIP computed in the step, the masked rows encoded with the others with dense features of
  every row; with `every_block`, every block of both vision towers runs."""
  del t_clip
  apply = lambda method, *a, **kw: model.apply({'params': params}, *a, method=method, **kw)
  bl, bu = batch.image_l.shape[0], batch.image_w.shape[0]
  text = apply(hvl.HVL.text_queries)
  rel_l = apply(objective.labeled_relevance, batch.label_l, model.cfg.num_classes)
  vl_class = objective.random_present_class(batch.label_l, model.cfg.num_classes, vl_key)
  hide = objective.hidden_region(batch.label_l, vl_class)[..., None]
  reference = apply(hvl.HVL.reference_features, batch.image_l, embeds=True)['dense']
  strong = objective.cutmix_views(batch)
  rel_w = apply(hvl.HVL.image_relevance, batch.image_w, text['t_clip'], batch.valid_u)
  rel_s = [
      jnp.where(
          box.any((1, 2))[:, None], jnp.maximum(rel_w, objective.cutmix_partner(rel_w)), rel_w)
      for box in (batch.box1, batch.box2)
  ]
  images = jnp.concatenate([batch.image_l, batch.image_w] + strong +
                           [jnp.where(hide, 0.0, batch.image_l)])
  enc = apply(hvl.HVL.encode, images, dense=True)
  rows = lambda t: jnp.concatenate([t[:bl], t[bl + bu:bl + 3 * bu]])
  predictions = apply(hvl.HVL.decode, [rows(t) for t in enc['taps']],
                      jnp.concatenate([rel_l] + rel_s), text, every_layer_rows=bl)
  return objective.Forward(text, enc['taps'], enc['dense'][bl + 3 * bu:], predictions, rel_w,
                           vl_class, reference)


@pytest.mark.slow
def test_the_step_without_unread_work_has_the_same_losses_and_gradients(rng, monkeypatch):
  """t^CLIP once, no block whose output is unread, dense features of the masked rows only: the
  terms and gradients of the joint formulation, with zero-shot gating on (E_I^0 in the step)."""
  batch = make_batch(rng)
  config = tiny_config(
      **{
          'loss.consistency.conf_threshold': 0.0, 'model.relevance.mode': 'dense',
          'model.relevance.threshold': 0.2
      })
  model, params = build(config)
  loss = objective.objective_config(config, model.cfg)
  key = jax.random.PRNGKey(3)
  t_clip = jax.jit(lambda p: model.apply({'params': p}, method=hvl.HVL.fixed_text_embeddings))(
      params)

  def terms_and_grads():
    fn = lambda p: objective.compute_loss(model, p, batch, key, loss, t_clip=t_clip)
    return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)

  (_, new_terms), new_grads = terms_and_grads()
  monkeypatch.setattr(objective, 'forward', joint_forward)
  monkeypatch.setattr(clip_lib, 'blocks_needed', lambda layers, *_: layers)
  (_, old_terms), old_grads = terms_and_grads()
  assert set(new_terms) == set(old_terms) and float(new_terms['vl_mask']) > 0
  for k in old_terms:
    np.testing.assert_allclose(new_terms[k], old_terms[k], rtol=2e-5, atol=1e-6, err_msg=k)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(new_grads),
                          jax.tree.leaves(old_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
