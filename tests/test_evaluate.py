"""Evaluation: confusion matrix and mIoU against numpy; the evaluator on known predictions; a
VOC-layout fixture read and evaluated as `--mode eval` does (configs/voc_92.py's geometry), with a
stand-in network, against a transcription of SemiVL's evaluation (tests/test_inference.py); a
config's named evaluations run by name, each writing its own record."""
import json
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import base
from hvl_jax.data import datasets
from hvl_jax.data import files
from hvl_jax.inference import evaluator as evaluator_lib
from hvl_jax.inference import metrics
from hvl_jax.inference import predictor as predictor_lib
from hvl_jax.common.config_tree import to_tree
from test_inference import K, semivl_zegclip, stand_in
from tiny import build, tiny_config


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
  presence = [np.eye(5, dtype=bool)[[0, 1, 2]].any(0)] * 4     # background, disk, square

  class KnownPredictor:
    calls = iter(zip(preds, presence))

    def prepare(self, params):
      return params

    def describe(self):
      return {'protocol': 'known'}

    def predict(self, prepared, image):
      return predictor_lib.Prediction(*next(self.calls))

  ev = evaluator_lib.Evaluator(config, KnownPredictor(), FixedSource(), [f'c{i}' for i in range(5)],
                               num_samples=2)
  results, samples = ev.run(None, str(tmp_path), tag='known')
  # The first two images come back with their predictions, for TensorBoard.
  assert len(samples) == 2
  for (image, pred, label), p, l in zip(samples, preds, labels):
    assert image.shape == (64, 64, 3)
    np.testing.assert_array_equal(pred, p)
    np.testing.assert_array_equal(label, l)
  inter = np.zeros(5)
  union = np.zeros(5)
  for p, l in zip(preds, labels):
    for c in range(5):
      inter[c] += ((p == c) & (l == c)).sum()
      union[c] += ((p == c) | (l == c)).sum()
  expected = np.mean([i / u for i, u in zip(inter, union) if u > 0])
  np.testing.assert_allclose(results['miou'], expected, rtol=1e-6)
  assert os.path.exists(tmp_path / 'eval_known.json') and os.path.exists(
      tmp_path / 'eval_known.txt')
  # The confusion matrix in the record: pixels of true class r predicted as c.
  counts = [[sum(int(((l == r) & (p == c)).sum()) for p, l in zip(preds, labels)) for c in range(5)]
            for r in range(5)]
  assert results['confusion'] == counts
  assert json.loads((tmp_path / 'eval_known.json').read_text())['confusion'] == counts
  # Presence against the labels, background (class 0) left out.
  tp = fp = fn = 0
  for l, p in zip(labels, presence):
    truth = np.isin(np.arange(5), l)
    tp += (p & truth)[1:].sum()
    fp += (p & ~truth)[1:].sum()
    fn += (~p & truth)[1:].sum()
  assert results['relevance_precision'] == tp / (tp + fp) and results['relevance_recall'] == tp / (
      tp + fn)
  assert results['inference'] == {'protocol': 'known'}


def test_voc_fixture_evaluated_as_semivl(tmp_path):
  root, splits = tmp_path / 'voc', tmp_path / 'splits'
  rng = np.random.RandomState(0)
  lines = []
  for i, (h, w) in enumerate(((375, 500), (500, 333), (281, 500))):
    os.makedirs(root / 'JPEGImages', exist_ok=True)
    os.makedirs(root / 'SegmentationClass', exist_ok=True)
    Image.fromarray(rng.randint(0, 256,
                                (h, w, 3)).astype(np.uint8)).save(root / f'JPEGImages/v{i}.jpg')
    label = np.zeros((h, w), np.uint8)
    label[h // 4:h // 2, w // 5:w // 2] = rng.randint(1, K)
    label[h // 4 - 3:h // 4, w // 5:w // 2] = 255           # a VOC boundary band
    label[2 * h // 3:, :w // 3] = rng.randint(1, K)
    Image.fromarray(label).save(root / f'SegmentationClass/v{i}.png')
    lines.append(f'JPEGImages/v{i}.jpg SegmentationClass/v{i}.png')
  os.makedirs(splits / 'pascal', exist_ok=True)
  (splits / 'pascal/val.txt').write_text('\n'.join(lines) + '\n')
  config = base.dataset_config('voc', 92)
  config.data.update(dict(root=str(root), splits_dir=str(splits)))
  geometry = predictor_lib.geometry(config)
  assert geometry == dict(crop=512, stride=426, protocol='zegclip_sliding_window', short_side=512,
                         max_side=2048)
  predictor = predictor_lib.Predictor(stand_in, num_classes=K, **geometry,
                                      batch=2)  # the stand-in scores K classes
  config.data.num_classes = K
  val = files.FileSource(str(root), datasets.read_split_list(str(splits / 'pascal/val.txt'), True),
                         21)
  results = evaluator_lib.Evaluator(config, predictor, val,
                                    [f'c{k}' for k in range(K)]).run(None, str(tmp_path)).results
  # SemiVL: PIL reads, the transcribed prediction, intersectionAndUnion summed over images.
  inter, union = np.zeros(K), np.zeros(K)
  for line in lines:
    image_rel, label_rel = line.split()
    image = np.array(Image.open(root / image_rel).convert('RGB'))
    mask = np.array(Image.open(root / label_rel))
    pred = semivl_zegclip(image, mask.shape, 512, 426, resize=True)
    keep = mask != 255
    for k in range(K):
      inter[k] += ((pred == k) & (mask == k) & keep).sum()
      union[k] += (((pred == k) | (mask == k)) & keep).sum()
  seen = union > 0
  np.testing.assert_allclose(results['miou'], (inter[seen] / union[seen]).mean(), atol=1e-4)
  written = json.loads((tmp_path / 'eval_eval.json').read_text())
  assert written['inference'] == dict(protocol='zegclip_sliding_window', crop=512, stride=426,
                                      short_side=512, max_side=2048)
  assert 'relevance_precision' not in written        # the stand-in does no gating


def test_named_evaluations_run_without_the_caller_knowing_their_kinds(tmp_path):
  """`evals` entries: the 'val' mIoU writes eval_<stage>.json with its strips, another mIoU entry
  eval_<name>_<stage>.json with the same figures, the zero-shot baseline eval_zero_shot.json as
  `evaluate_zero_shot` scores it; the open-vocabulary entry has nothing to run without names; an
  unknown kind is named."""
  config = tiny_config(**{'data.synthetic_val': 3})
  with config.unlocked():
    config.evals.again = to_tree(evaluator_lib.EvalConfig(kind='miou'))
    config.evals.zero_shot = to_tree(evaluator_lib.EvalConfig(kind='zero_shot'))
  model, params = build(config)
  source = datasets.make_sources(config)['val']
  names = datasets.class_names(config)
  evaluations = evaluator_lib.Evaluations(config, model, None, source, names)
  assert evaluations.periodic() == ['val', 'again']
  done = evaluations.run_all(params, str(tmp_path), 'final', title='t', extra={'note': 1})
  assert sorted(done) == ['again', 'val', 'zero_shot']        # open_vocabulary: no names given
  assert len(done['val'].samples) == 3 and not done['again'].samples    # strips: 4, 3 images
  val = json.loads((tmp_path / 'eval_final.json').read_text())
  again = json.loads((tmp_path / 'eval_again_final.json').read_text())
  assert val['miou'] == again['miou'] == done['val'].results['miou'] and val['note'] == 1
  baseline = evaluator_lib.evaluate_zero_shot(config, model, source, names, params, None)
  assert done['zero_shot'].results == baseline
  assert json.loads((tmp_path / 'eval_zero_shot.json').read_text())['miou'] == baseline[
      'zero_shot_miou']
  with config.unlocked():
    config.evals.nope = dict(kind='psnr')
  with pytest.raises(ValueError, match="evals: kind 'psnr' is not one of"):
    evaluator_lib.Evaluations(config, model, None, source, names)
