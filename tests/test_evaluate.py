"""Evaluation: confusion matrix and mIoU against numpy; the evaluator on known predictions."""
import os

import jax.numpy as jnp
import numpy as np

from hvl_jax import evaluate, metrics
from hvl_jax.data import datasets
from tiny import tiny_config


def test_confusion_and_miou_against_numpy(rng):
  label = rng.randint(0, 4, (3, 20, 20))
  label[0, :5] = 255
  pred = rng.randint(0, 4, (3, 20, 20))
  conf = np.asarray(metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(label), 4))
  ref = np.zeros((4, 4), np.int64)
  for g, p in zip(label.ravel(), pred.ravel()):
    if g != 255:
      ref[g, p] += 1
  np.testing.assert_array_equal(conf, ref)
  miou, per_class = metrics.mean_iou(conf)
  ious = [ref[c, c] / (ref[c].sum() + ref[:, c].sum() - ref[c, c]) for c in range(4)]
  np.testing.assert_allclose(per_class, ious)
  np.testing.assert_allclose(miou, np.mean(ious))
  # A class absent from both prediction and ground truth is NaN and excluded.
  conf2 = np.asarray([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
  miou2, per2 = metrics.mean_iou(conf2)
  assert np.isnan(per2[2]) and np.isclose(miou2, (5 / 8 + 3 / 6) / 2)


def test_evaluator_on_known_predictions(tmp_path, rng):
  config = tiny_config()
  source = datasets.make_sources(config)['val']
  labels = [source[i]['label'] for i in range(4)]

  class FixedSource:
    def __len__(self):
      return 4

    def __getitem__(self, i):
      return dict(image=np.zeros((64, 64, 3), np.uint8), label=labels[i], name=str(i))

  preds = [np.where(rng.rand(64, 64) < 0.7, l, rng.randint(0, 5, (64, 64))) for l in labels]
  class KnownPredictor:
    calls = iter(preds)

    def prepare(self, params):
      return params

    def predict(self, prepared, image):
      return next(self.calls)

  ev = evaluate.Evaluator(config, KnownPredictor(), FixedSource(), [f'c{i}' for i in range(5)])
  results = ev.run(None, str(tmp_path), tag='known')
  inter = np.zeros(5)
  union = np.zeros(5)
  for p, l in zip(preds, labels):
    for c in range(5):
      inter[c] += ((p == c) & (l == c)).sum()
      union[c] += ((p == c) | (l == c)).sum()
  expected = np.mean([i / u for i, u in zip(inter, union) if u > 0])
  np.testing.assert_allclose(results['miou'], expected, rtol=1e-6)
  assert os.path.exists(tmp_path / 'eval_known.json') and os.path.exists(tmp_path / 'eval_known.txt')
