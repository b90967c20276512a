"""The whole network on a tiny config: predictions, semantic inference against numpy, the EVA02
backbone at patch 14, config errors, text sequences cut after the longest prompt, hard and soft
relevance gating."""
import dataclasses

import cv2

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.data import datasets
from hvl_jax.models import hvl, queries, zero_shot
from hvl_jax.models import semantic_inference
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.training import optim
from tiny import CLASS_NAMES, build, finite_loss_and_grads, make_batch, tiny_config


@pytest.mark.slow
def test_predictions_shapes_and_inference(rng):
  config = tiny_config()
  model, params = build(config)
  images = jnp.asarray(rng.randn(2, 64, 96, 3), jnp.float32)
  out = jax.jit(lambda p, x: model.apply({'params': p}, x))(params, images)
  q = 3 * 5 + 4
  assert len(out['predictions']) == config.model.decoder.layers + 1
  cls, masks = out['predictions'][-1]
  assert cls.shape == (2, q, 6) and masks.shape == (2, 16, 24, q)
  for mode in ('query_argmax', 'mask2former'):
    pred = semantic_inference.predict_classes(cls, masks, (64, 96), mode)
    assert pred.shape == (2, 64, 96) and pred.dtype == jnp.int32
    assert int(pred.min()) >= 0 and int(pred.max()) < 5


def test_class_probabilities_match_numpy(rng):
  cls = rng.randn(2, 4, 4).astype(np.float32)
  masks = rng.randn(2, 2, 3, 4).astype(np.float32)
  p = np.exp(cls) / np.exp(cls).sum(-1, keepdims=True)
  p = p[..., :-1]
  m = 1 / (1 + np.exp(-masks))
  ref = np.zeros((2, 2, 3, 3), np.float64)
  for b in range(2):
    for y in range(2):
      for x in range(3):
        winner = (m[b, y, x] * p[b].max(-1)).argmax()
        ref[b, y, x] = p[b, winner] / p[b, winner].sum()
  probs = np.asarray(semantic_inference.class_probabilities(cls, masks, 'query_argmax'))
  np.testing.assert_allclose(probs, ref, rtol=1e-5)
  m2f = np.einsum('bqk,bhwq->bhwk', p, m)
  np.testing.assert_allclose(semantic_inference.class_probabilities(cls, masks, 'mask2former'),
                             m2f / m2f.sum(-1, keepdims=True), rtol=1e-5)


@pytest.mark.slow
def test_eva02_backbone_at_patch_14(rng):
  """EVA02 towers in the whole network: 56x56 crops are 4x4 tokens, mask logits at stride 3.5."""
  config = tiny_config(**{'model.backbone': 'eva02_clip_l14', 'model.clip.patch_size': 14,
                          'model.clip.image_size': 28, 'data.crop_size': 56})
  terms, grads = finite_loss_and_grads(config, make_batch(rng, size=56))
  assert 'semi_fp' in terms and float(terms['vl_mask']) > 0
  assert np.abs(np.asarray(grads['backbone']['blocks']['0']['mlp']['fc1_g']['kernel'])).max() > 0
  model, params = build(config)
  assert params['backbone']['pos_embed'].shape == (1, 1 + 2 * 2, 32)
  groups = optim.param_groups(params)
  assert groups['backbone']['pos_embed'] == groups['backbone']['cls_token'] == 'backbone/no_decay'
  assert groups['backbone']['blocks']['0']['mlp']['fc1_g']['kernel'] == 'backbone/decay'
  images = jnp.asarray(rng.randn(1, 56, 84, 3), jnp.float32)
  cls, masks = jax.jit(lambda p, x: model.apply({'params': p}, x))(params,
                                                                   images)['predictions'][-1]
  assert masks.shape == (1, 16, 24, 3 * 5 + 4)
  with pytest.raises(ValueError, match='model.clip.image_size=64 is not divisible'):
    hvl.build_model(
        tiny_config(**{'model.backbone': 'eva02_clip_l14', 'model.clip.patch_size': 14}),
        CLASS_NAMES)
  with pytest.raises(ValueError, match='data.crop_size=64 is not divisible'):
    hvl.build_model(tiny_config(**{'model.backbone': 'eva02_clip_l14', 'model.clip.patch_size': 14,
                                   'model.clip.image_size': 28}), CLASS_NAMES)


def test_bad_remat_policy_names_the_field():
  with pytest.raises(ValueError, match="model.decoder.remat must be 'none' or one of .*got 'dots'"):
    hvl.build_model(tiny_config(**{'model.decoder.remat': 'dots'}), CLASS_NAMES)


def test_text_encoder_runs_over_the_longest_prompt_only():
  # Cutting the token sequences after the longest one's EOS (rounded up to 8) changes no text
  # embedding: the text encoder is causal.
  config = tiny_config()
  model, clip = hvl.build_model(config, CLASS_NAMES)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  ids, _ = queries.prompt_layout(clip.tokenizer, CLASS_NAMES, config.model.htqg.prompt_tokens,
                                 clip.config.context_length)
  templates = queries.template_layout(clip.tokenizer, CLASS_NAMES)
  as_tuple = lambda a: tuple(map(tuple, a.tolist()))
  full = hvl.HVL(
      dataclasses.replace(model.cfg, prompt_ids=as_tuple(ids), template_ids=as_tuple(templates)))
  assert len(model.cfg.prompt_ids[0]) % 8 == 0 and len(model.cfg.prompt_ids[0]) < ids.shape[1] == 24
  assert len(model.cfg.template_ids[0]) < templates.shape[1]
  cut = model.apply({'params': params}, method=hvl.HVL.text_queries)
  whole = full.apply({'params': params}, method=hvl.HVL.text_queries)
  for key in ('t_clip', 'level_queries', 't_hat', 'phi'):
    np.testing.assert_allclose(np.asarray(cut[key]), np.asarray(whole[key]), rtol=1e-5, atol=1e-6)


def decode_fn(model):
  return jax.jit(
      lambda p, taps, rel, text: model.apply({'params': p}, taps, rel, text, method=hvl.HVL.decode))


@pytest.mark.parametrize('gating', ['hard', 'soft'])
def test_relevance_gating(gating, rng):
  config = tiny_config(**{'model.relevance.gating': gating, 'model.relevance.mode': 'dense'})
  model, params = build(config)
  images = jnp.asarray(rng.randn(2, 64, 64, 3), jnp.float32)
  taps = model.apply({'params': params}, images, method=hvl.HVL.encode)['taps']
  text = model.apply({'params': params}, method=hvl.HVL.text_queries)
  relevance = jnp.asarray([[1.0, 0.9, 0.1, 0.6, 0.0], [1.0, 0.0, 0.7, 0.2, 0.3]])
  decode = decode_fn(model)
  base = decode(params, taps, relevance, text)
  # Another text query for class 2 (judged absent in image 0 only, s = 0.1).
  other = dict(
      text,
      level_queries=text['level_queries'].at[:, 2].add(jnp.asarray(rng.randn(3, 32), jnp.float32)))
  moved = decode(params, taps, relevance, other)
  k, levels = 5, 3
  class_2 = np.asarray([l * k + 2 for l in range(levels)])
  for (c0, m0), (c1, m1) in zip(base, moved):
    if gating == 'hard':
      # Image 0: the filtered query changes nothing, anywhere; it predicts no-object, no mask.
      np.testing.assert_array_equal(c0[0], c1[0])
      np.testing.assert_array_equal(m0[0], m1[0])
      assert (np.asarray(jax.nn.softmax(c0[0, class_2]))[:, -1] > 0.999).all()
      assert (np.asarray(m0[0, ..., class_2]) <= -1e3).all()
    # Image 1 keeps class 2 (s = 0.7): its outputs move with the query, under both gatings.
    assert not np.allclose(c0[1], c1[1])
  if gating == 'soft':
    # Soft: the query is scaled by s = 0.1, not removed: image 0's outputs move too.
    assert not np.allclose(base[-1][0][0], moved[-1][0][0])
  present = np.asarray(model.apply({'params': params}, relevance, method=hvl.HVL.present_classes))
  np.testing.assert_array_equal(present, [[1, 1, 0, 1, 0], [1, 0, 1, 0, 0]])
  # No class above the threshold: the most relevant one is kept.
  lone = np.asarray(model.apply({'params': params}, jnp.asarray([[0.2, 0.3, 0.1, 0.0, 0.0]]),
                                method=hvl.HVL.present_classes))
  np.testing.assert_array_equal(lone, [[0, 1, 0, 0, 0]])


def test_crops_relevance_is_the_max_over_views(rng):
  config = tiny_config(**{'model.relevance.mode': 'crops'})
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  images = rng.randint(0, 256, (2, 64, 64, 3)).astype(np.uint8)
  t_clip = model.apply({'params': params}, method=hvl.HVL.text_queries)['t_clip']
  s = model.apply({'params': params}, clip_lib.normalize_images(images), t_clip,
                  method=hvl.HVL.image_relevance)
  # The CLIP on the image and on each crop resized to 64 (cv2), the image-level softmax, max.
  text = zero_shot.class_text_embeddings(clip, names)
  views = [images] + [
      np.stack([
          cv2.resize(
              im[int(y * 64):int(y * 64) + int(f * 64),
                 int(x * 64):int(x * 64) + int(f * 64)], (64, 64), interpolation=cv2.INTER_LINEAR)
          for im in images
      ])
      for y, x, f in zero_shot.CROPS
  ]
  probs = [
      np.asarray(
          zero_shot.image_class_probs(clip.encode_image(clip_lib.normalize_images(v)), text,
                                      clip.logit_scale)) for v in views
  ]
  expected = np.max(probs, axis=0)
  expected[:, 0] = 1.0          # the background class is always kept
  # uint8 crops resized by cv2 vs float crops resized by JAX: a few units of 1e-3.
  np.testing.assert_allclose(s, expected, atol=2e-2)
  assert len(views) == 9
