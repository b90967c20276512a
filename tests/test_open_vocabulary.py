"""Open-vocabulary inference: the extended logits against a numpy transcription; with the training
names it is closed-set inference (bit for bit; permuted names permute the scores); renaming a
class changes only that class's queries; the evaluation on the 9-class world reports seen and
unseen classes beside the closed-set network on the same labels."""
import json

from flax import traverse_util
import jax
import numpy as np
import pytest

from hvl_jax.data import datasets, synthetic
from hvl_jax.inference import evaluator as evaluator_lib
from hvl_jax.inference import open_vocabulary
from hvl_jax.models import hvl
from hvl_jax.models import semantic_inference
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.models.decoder import FILTERED_LOGIT
from tiny import CLASS_NAMES, build, tiny_config


def logits_reference(cls, seen, levels, relevance):
  """numpy, one query and one named class at a time."""
  b, q, k1 = cls.shape
  kn = len(seen)
  out = np.full((b, q, kn + 1), FILTERED_LOGIT, np.float64)
  for i in range(q):
    own = i % kn if i < levels * kn else None        # the class of a class-level query
    if own is not None and seen[own] < 0:            # p = s * (1 - p(no-object))
      e = np.exp(cls[:, i] - cls[:, i].max(-1, keepdims=True))
      p = relevance[:, own] * e[:, :-1].sum(-1) / e.sum(-1)
      out[:, i, own], out[:, i, kn] = np.log(p), np.log(1 - p)
      continue
    for j in range(kn):
      if seen[j] >= 0:
        out[:, i, j] = cls[:, i, seen[j]]
    out[:, i, kn] = cls[:, i, -1]
  return out


def test_open_vocabulary_logits_against_numpy(rng):
  seen = np.asarray([0, -1, 2, 1, -1, -1])      # training class 3 not named; three new classes
  levels, m, k = 3, 4, 4
  cls = rng.randn(2, levels * len(seen) + m, k + 1).astype(np.float32)
  relevance = rng.uniform(0.05, 1, (2, len(seen))).astype(np.float32)
  out = np.asarray(semantic_inference.open_vocabulary_logits(cls, seen, levels, relevance))
  np.testing.assert_allclose(out, logits_reference(cls, seen, levels, relevance), rtol=1e-5,
                             atol=1e-5)
  # With s = 1 a new class's probability is its query's objectness, 1 - p(no-object).
  p = jax.nn.softmax(
      semantic_inference.open_vocabulary_logits(cls, seen, levels, np.ones_like(relevance)), -1)
  np.testing.assert_allclose(p[:, 1, 1], 1 - jax.nn.softmax(cls, -1)[:, 1, -1], rtol=1e-5)
  # The training names in order: the head's logits unchanged.
  np.testing.assert_array_equal(
      np.asarray(
          semantic_inference.open_vocabulary_logits(cls[:, :levels * k + m], np.arange(k), levels,
                                                    relevance[:, :k])), cls[:, :levels * k + m])


def test_seen_classes_renamed_labels_and_bad_names():
  seen = open_vocabulary.seen_classes(('Disk', 'star', ' background '), CLASS_NAMES)
  np.testing.assert_array_equal(seen, [1, -1, 0])
  assert open_vocabulary.unnamed_training_classes(seen, len(CLASS_NAMES)) == [2, 3, 4]
  config = tiny_config()
  assert open_vocabulary.renamed_labels(config, synthetic.CLASS_NAMES) == []
  assert open_vocabulary.renamed_labels(config, ('background', 'Disk', 'star')) == [
      "inference.class_names[2]='star' is scored against the synthetic label 2 (square)"]
  for bad in [('disk', 'DISK'), ('disk', ''), ('disk', 3)]:
    with pytest.raises(ValueError, match='inference.class_names'):
      open_vocabulary.check_names(bad)
  config = tiny_config(**{'model.queries': 'random', 'model.pixel_decoder.ptrm': False,
                          'inference.class_names': CLASS_NAMES})
  with pytest.raises(ValueError, match="model.queries='htqg'"):
    open_vocabulary.build(config)


def scores_of(model, params, images, seen=None):
  """{mode: class probabilities (B, H, W, K)} of the network's last layer, as
  `inference.network_scores` computes them (one forward pass for both modes)."""
  out = jax.jit(lambda p, x: model.apply({'params': p}, clip_lib.normalize_images(x)))(params,
                                                                                       images)
  cls, masks = out['predictions'][-1]
  if seen is not None:
    cls = semantic_inference.open_vocabulary_logits(cls, seen, model.cfg.num_levels,
                                                    out['relevance'])
  return {
      mode: np.asarray(
          semantic_inference.upsampled_class_probabilities(cls, masks, images.shape[1:3], mode)
      ) for mode in ('query_argmax', 'mask2former')
  }


def test_training_names_give_the_closed_set_predictions():
  config = tiny_config(
      **{
          'model.relevance.mode': 'dense', 'model.relevance.threshold': 0.3,
          'data.class_names': CLASS_NAMES
      })
  model, params = build(config)
  source = datasets.make_sources(config)['val']
  images = np.stack([source[i]['image'] for i in range(3)])
  closed = scores_of(model, params, images)
  with config.unlocked():
    config.inference.class_names = CLASS_NAMES
  ov = open_vocabulary.build(config)
  for mode, scores in scores_of(ov.model, params, images, ov.seen).items():
    np.testing.assert_array_equal(scores, closed[mode])
  # Permuted names: the same classes in another order (the network is equivariant in them).
  order = [3, 0, 4, 2, 1]
  with config.unlocked():
    config.inference.class_names = tuple(CLASS_NAMES[i] for i in order)
  ov = open_vocabulary.build(config)
  assert ov.config.data.background_classes == (1,)
  for mode, scores in scores_of(ov.model, params, images, ov.seen).items():
    np.testing.assert_allclose(scores, closed[mode][..., order], atol=1e-5)


def test_renaming_a_class_changes_only_its_queries():
  config = tiny_config(**{'data.class_names': CLASS_NAMES})
  model, params = build(config)
  text = model.apply({'params': params}, method=hvl.HVL.text_queries)
  renamed = list(CLASS_NAMES)
  renamed[3] = 'star'
  with config.unlocked():
    config.inference.class_names = tuple(renamed)
  ov = open_vocabulary.build(config)
  np.testing.assert_array_equal(ov.seen, [0, 1, 2, -1, 4])
  text2 = ov.model.apply({'params': params}, method=hvl.HVL.text_queries)
  others = [0, 1, 2, 4]
  for key in ('level_queries', 't_clip', 't_hat'):
    a, b = np.asarray(text[key]), np.asarray(text2[key])
    axis = 1 if key == 'level_queries' else 0
    np.testing.assert_allclose(np.take(a, others, axis), np.take(b, others, axis), atol=1e-6)
    assert np.abs(np.take(a, 3, axis) - np.take(b, 3, axis)).max() > 1e-3


def test_open_vocabulary_evaluation_on_the_nine_class_world(tmp_path):
  config = tiny_config(**{'data.synthetic_val': 6, 'inference.class_names': synthetic.CLASS_NAMES})
  model, clip = hvl.build_model(config, datasets.class_names(config))
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  ov = open_vocabulary.build(config, clip)
  # The trained parameters fit the network of the 9 names (the class head keeps 5 + 1 logits).
  shapes = lambda tree: {k: v.shape for k, v in traverse_util.flatten_dict(dict(tree)).items()}
  assert shapes(hvl.init_params(ov.model, clip, jax.random.PRNGKey(1),
                                config.data.crop_size)) == shapes(params)
  results = evaluator_lib.evaluate_open_vocabulary(config, model, clip, params, str(tmp_path))
  saved = json.loads((tmp_path / 'eval_open_vocabulary.json').read_text())
  assert saved['class_names'] == list(
      synthetic.CLASS_NAMES) and saved['seen_classes'] == [0, 1, 2, 3, 4, -1, -1, -1, -1]
  per_class = [np.nan if v is None else v for v in saved['per_class_iou'].values()]
  expected = open_vocabulary.split_miou(np.asarray(per_class), ov.seen)
  assert saved['miou_seen'] == pytest.approx(expected['miou_seen'])
  assert results['miou_unseen'] == saved['miou_unseen']
  # The closed-set network on the same labels never predicts a new class.
  closed = json.loads((tmp_path / 'eval_closed_set.json').read_text())
  assert all(closed['per_class_iou'][n] in (0.0, None) for n in synthetic.CLASS_NAMES[5:])
  assert saved['closed_set_miou_seen'] == closed['miou_seen']
