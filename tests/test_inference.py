"""Inference: window placement and sliding-window averaging against a numpy transcription, with
a stand-in scores function (a fixed function of the pixels); the network's predictor gives the
same class maps with its window batches sharded over 2 devices as on one."""
import jax
import numpy as np
import pytest

from hvl_jax import inference
from hvl_jax import state as state_lib
from hvl_jax.models import hvl
from tiny import tiny_config

K = 4


def stand_in_scores(params, images):
  """(N, h, w, 3) uint8 -> (N, h, w, K): class scores that depend on the pixel and its window."""
  x = images.astype(np.float32) / 255.0
  offset = params['offset']
  k = np.arange(K, dtype=np.float32)
  # The window's mean makes the score depend on which window a pixel is seen in.
  return np.sin(x[..., :1] * (k + 1) + x.mean(axis=(1, 2, 3), keepdims=True) * 3 + offset)


def reference_sliding(image, crop, stride):
  """Numpy transcription: pad to the crop, windows every `stride` with the last flush, mean scores."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)))
  ph, pw = padded.shape[:2]
  starts = lambda n: [0] if n <= crop else sorted(set(list(range(0, n - crop, stride)) + [n - crop]))
  total, count = np.zeros((ph, pw, K)), np.zeros((ph, pw, 1))
  for y in starts(ph):
    for x in starts(pw):
      total[y:y + crop, x:x + crop] += stand_in_scores({'offset': 0.5}, padded[None, y:y + crop, x:x + crop])[0]
      count[y:y + crop, x:x + crop] += 1
  return (total / count)[:h, :w].argmax(-1)


@pytest.mark.parametrize('length,crop,stride', [(10, 4, 3), (4, 4, 2), (3, 4, 2), (100, 32, 21), (33, 32, 21)])
def test_windows_cover_the_length_and_end_flush(length, crop, stride):
  starts = inference.window_starts(length, crop, stride)
  covered = np.zeros(max(length, crop), bool)
  for s in starts:
    covered[s:s + crop] = True
  assert covered[:length].all() and starts[0] == 0
  assert starts[-1] + crop == max(length, crop)
  assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize('h,w,batch', [(37, 50, 1), (37, 50, 4), (20, 20, 3), (16, 70, 2)])
def test_sliding_window_matches_numpy(h, w, batch):
  image = np.random.RandomState(h * w).randint(0, 256, (h, w, 3)).astype(np.uint8)
  calls = []

  def scores(params, images):
    calls.append(images.shape[0])
    return stand_in_scores(params, images)

  predictor = inference.Predictor(scores, num_classes=K, crop=24, stride=16, batch=batch,
                                  prepare=lambda params: {'offset': params})
  pred = predictor.predict(predictor.prepare(0.5), image)
  assert set(calls) == {batch}     # the last batch is padded: one shape
  assert pred.shape == (h, w) and pred.dtype == np.int32
  np.testing.assert_array_equal(pred, reference_sliding(image, 24, 16))


def test_whole_image_pads_to_the_multiple_and_crops_back():
  seen = []

  def scores(params, images):
    seen.append(images.shape)
    return stand_in_scores(params, images)

  image = np.random.RandomState(0).randint(0, 256, (30, 45, 3)).astype(np.uint8)
  predictor = inference.Predictor(scores, num_classes=K, crop=24, stride=16, window='whole', pad_multiple=16)
  pred = predictor.predict({'offset': 0.0}, image)
  assert seen == [(1, 32, 48, 3)] and pred.shape == (30, 45)
  padded = np.pad(image, ((0, 2), (0, 3), (0, 0)))
  np.testing.assert_array_equal(pred, stand_in_scores({'offset': 0.0}, padded[None])[0, :30, :45].argmax(-1))
  with pytest.raises(ValueError, match='inference.window'):
    inference.Predictor(scores, num_classes=K, crop=24, stride=16, window='tiles')


@pytest.mark.slow
def test_windows_sharded_over_two_devices_give_the_one_device_maps():
  assert jax.local_device_count() == 2, 'tests run with 2 simulated CPU devices (conftest)'
  config = tiny_config(**{'inference.window': 'sliding', 'inference.window_batch': 3})
  model, clip, _ = state_lib.build(config)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  sharded = inference.Predictor.from_config(config, model)
  assert sharded.batch == 4          # rounded up to a multiple of the 2 devices
  prepare, scores = inference.network_scores(model, config.inference.mode)
  single = inference.Predictor(scores, num_classes=config.data.num_classes, crop=64, stride=42, batch=4,
                               prepare=prepare)
  rng = np.random.RandomState(0)
  a, b = sharded.prepare(params), single.prepare(params)
  for h, w in ((80, 100), (64, 64)):
    image = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    np.testing.assert_array_equal(sharded.predict(a, image), single.predict(b, image))
