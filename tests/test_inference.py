"""Inference geometry against transcriptions of SemiVL's evaluation written here (numpy and
PyTorch, as its `supervised.py` computes it), with stand-in scores functions (fixed functions of
the pixels and their place in the window); the network's predictor gives the same class maps
with its window batches sharded over 2 devices as on one."""
import cv2
import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hvl_jax.data import datasets
from hvl_jax.inference import predictor as predictor_lib
from hvl_jax.models import hvl, zero_shot
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.models.backbones import registry
from tiny import tiny_config

K = 5


def stand_in_probs(images):
  """(N, h, w, 3) uint8 -> (N, h, w, K) class probabilities that depend on the pixel and on its
  place in its window (so where the windows lie matters)."""
  x = images.astype(np.float64) / 255.0
  n, h, w = x.shape[:3]
  rows = (np.arange(h) / h)[None, :, None, None]
  cols = (np.arange(w) / w)[None, None, :, None]
  k = np.arange(K)
  logits = 3 * np.sin(x[..., :1] *
                      (k + 1) + x[..., 1:2] * 2) + np.cos(rows * (k + 2)) + np.sin(cols *
                                                                                   (k + 1) * 2)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def stand_in(prepared, images, valid):
  del prepared
  assert valid.all()            # pad_multiple=1: no window is padded
  return stand_in_probs(images), None


def model_nchw(img):
  """The stand-in as SemiVL's `model(img)`: (B, 3, h, w) float -> logits (B, K, h, w)."""
  images = img.permute(0, 2, 3, 1).numpy().astype(np.uint8)
  return torch.from_numpy(np.log(stand_in_probs(images))).permute(0, 3, 1, 2)


def mmseg_min_size_resize(image, short=512):
  """mmseg Resize(img_scale=(2048, 512), min_size=512) of the validation image (keep_ratio)."""
  h, w = image.shape[:2]
  new_short = max(min(2048, 512), short)
  new_h, new_w = (new_short * h / w, new_short) if h > w else (new_short, new_short * w / h)
  long_edge, short_edge = max(new_h, new_w), min(new_h, new_w)
  factor = min(long_edge / max(h, w), short_edge / min(h, w))
  size = (int(w * factor + 0.5), int(h * factor + 0.5))
  return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def semivl_zegclip(image, label_hw, crop, stride, resize):
  """SemiVL's `predict(..., mode='zegclip_sliding_window')`, transcribed."""
  if resize:
    image = mmseg_min_size_resize(image)
  img = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
  h_stride = w_stride = stride
  h_crop = w_crop = crop
  batch_size, _, h_img, w_img = img.size()
  h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
  w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
  preds = img.new_zeros((batch_size, K, h_img, w_img))
  count_mat = img.new_zeros((batch_size, 1, h_img, w_img))
  for h_idx in range(h_grids):
    for w_idx in range(w_grids):
      y1, x1 = h_idx * h_stride, w_idx * w_stride
      y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
      y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
      logit = model_nchw(img[:, :, y1:y2, x1:x2]).exp()    # the stand-in's scores: probabilities
      preds += F.pad(logit, (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)))
      count_mat[:, :, y1:y2, x1:x2] += 1
  assert (count_mat == 0).sum() == 0
  preds = preds / count_mat
  final = F.interpolate(preds, size=label_hw, mode='bilinear', align_corners=True)
  return final.argmax(dim=1)[0].numpy()


def unimatch_sliding(image, grid):
  """UniMatch's `predict(..., mode='sliding_window')`, transcribed (softmax of the logits
  summed)."""
  img = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
  b, _, h, w = img.shape
  final = torch.zeros(b, K, h, w, dtype=torch.float64)
  row = 0
  while row < h:
    col = 0
    while col < w:
      pred = model_nchw(img[:, :, row: min(h, row + grid), col: min(w, col + grid)]).double()
      final[:, :, row: min(h, row + grid), col: min(w, col + grid)] += pred.softmax(dim=1)
      col += int(grid * 2 / 3)
    row += int(grid * 2 / 3)
  return final.argmax(dim=1)[0].numpy()


def random_image(rng, h, w):
  return rng.randint(0, 256, (h, w, 3)).astype(np.uint8)


def test_window_boxes_match_the_zegclip_windows_on_random_sizes():
  rng = np.random.RandomState(0)
  for _ in range(300):
    h, w, crop = rng.randint(1, 1500), rng.randint(1, 1500), rng.randint(8, 600)
    stride = rng.randint(1, crop + 1)
    expected = []
    for hi in range(max(h - crop + stride - 1, 0) // stride + 1):
      for wi in range(max(w - crop + stride - 1, 0) // stride + 1):
        y2, x2 = min(hi * stride + crop, h), min(wi * stride + crop, w)
        expected.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    assert predictor_lib.window_boxes(h, w, crop, stride) == expected
  assert predictor_lib.window_boxes(512, 683, 512, 426) == [(0, 512, 0, 512), (0, 512, 171, 683)]


def test_sliding_window_boxes_match_unimatch_on_random_sizes():
  rng = np.random.RandomState(1)
  for _ in range(300):
    h, w, grid = rng.randint(1, 2100), rng.randint(1, 2100), rng.randint(3, 900)
    step = int(grid * 2 / 3)
    expected, row = [], 0
    while row < h:
      col = 0
      while col < w:
        expected.append((row, min(h, row + grid), col, min(w, col + grid)))
        col += step
      row += step
    assert predictor_lib.sliding_window_boxes(h, w, grid, step) == expected


def test_resize_align_corners_matches_torch():
  x = np.random.RandomState(2).rand(9, 13, 4).astype(np.float32)
  for size in ((9, 13), (20, 31), (4, 5), (1, 7), (40, 1)):
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], size=size, mode='bilinear',
                        align_corners=True)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(predictor_lib.resize_align_corners(x, size), ref, atol=1e-5)


@pytest.mark.parametrize('h,w,resize,batch', [(375, 500, True, 2), (500, 333, True, 1),
                                              (96, 150, True, 3), (480, 640, False, 2),
                                              (300, 430, False, 1), (60, 90, False, 4)])
def test_zegclip_protocol_matches_semivl(h, w, resize, batch):
  image = random_image(np.random.RandomState(h + w), h, w)
  calls = []

  def scores(prepared, images, valid):
    calls.append(images.shape[0])
    return stand_in(prepared, images, valid)

  crop, stride = (128, 106) if h < 100 else (256, 213)
  predictor = predictor_lib.Predictor(scores, num_classes=K, crop=crop, stride=stride, batch=batch,
                                      protocol='zegclip_sliding_window',
                                      short_side=512 if resize else 0)
  pred = predictor.predict(None, image)
  assert set(calls) == {batch}     # every call has the batch's static shape
  assert pred.classes.shape == (h, w) and pred.classes.dtype == np.int32 and pred.present is None
  expected = semivl_zegclip(image, (h, w), crop, stride, resize)
  # float32 vs float64 sums may flip a tie-close pixel; allow none in practice.
  assert (pred.classes != expected).mean() < 1e-4


def test_a_list_of_images_is_batched_and_predicted_as_each_alone():
  rng = np.random.RandomState(1)
  images = [random_image(rng, h, w) for h, w in ((300, 420), (256, 256), (290, 500), (100, 120))]
  calls = []

  def scores(prepared, batch, valid):
    calls.append(batch.shape[0])
    out = stand_in_probs(batch)
    return out, (out.reshape(out.shape[0], -1, K).max(1) > 0.5)

  predictor = predictor_lib.Predictor(scores, num_classes=K, crop=256, stride=213, batch=4,
                                  protocol='zegclip_sliding_window', short_side=0)
  together = predictor.predict_many(None, images)
  n_together = len(calls)
  alone = [predictor.predict(None, image) for image in images]
  # 11 windows of 256 x 256 in 3 calls of 4, the 100 x 120 image's one window in a call of its own;
  # image by image, 5 calls.
  assert sum(len(predictor.boxes(*image.shape[:2])) for image in images[:3]) == 11
  assert n_together == 3 + 1 and len(calls) - n_together == 5
  for a, b in zip(together, alone):
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_array_equal(a.present, b.present)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-6)
    np.testing.assert_array_equal(a.classes, a.probabilities.argmax(-1))


@pytest.mark.parametrize('protocol,short_side', [('whole', 0), ('zegclip_sliding_window', 0),
                                                 ('zegclip_sliding_window', 96),
                                                 ('sliding_window', 0)])
def test_a_photo_above_max_side_is_predicted_at_it_and_its_class_map_resized_back(
    protocol, short_side):
  h, w, max_side = 301, 230, 64
  image = random_image(np.random.RandomState(3), h, w)
  shapes = []

  def scores(prepared, images, valid):
    shapes.append(images.shape[1:3])
    return stand_in(prepared, images, valid)

  predictor = predictor_lib.Predictor(scores, num_classes=K, crop=48, stride=32, protocol=protocol,
                                      short_side=short_side, max_side=max_side)
  pred = predictor.predict(None, image)
  # The long side brought to 64 (UniMatch's rounding), whatever the short-side resize made of it.
  small = (64, int(230 * 64 / 301 + 0.5))
  assert predictor.capped(h, w) and predictor.inference_size(h, w) == small
  assert max(max(s) for s in shapes) <= max_side
  assert pred.classes.shape == (h, w) and pred.probabilities.shape == small + (K,)
  # Reference: the same windows on cv2's area-resized image, then PyTorch's bilinear
  # (align_corners) upsampling of the probabilities and argmax.
  reference = predictor_lib.Predictor(stand_in, num_classes=K, crop=48, stride=32,
                                      protocol=protocol)
  resized = cv2.resize(image, small[::-1], interpolation=cv2.INTER_AREA)
  probs = reference.predict(None, resized).probabilities
  np.testing.assert_allclose(pred.probabilities, probs, rtol=1e-6)
  up = F.interpolate(torch.from_numpy(probs).permute(2, 0, 1)[None], size=(h, w), mode='bilinear',
                     align_corners=True)[0].permute(1, 2, 0).numpy()
  assert (pred.classes != up.argmax(-1)).mean() < 1e-4
  if not short_side:     # below the limit: as before, at the image's own size
    assert not predictor.capped(60, 64) and predictor.predict(
        None, image[:60, :64]).probabilities.shape == (60, 64, K)


@pytest.mark.parametrize('h,w,crop', [(256, 512, 200), (100, 300, 96), (97, 61, 40)])
def test_sliding_window_protocol_matches_unimatch(h, w, crop):
  image = random_image(np.random.RandomState(h * w), h, w)
  predictor = predictor_lib.Predictor(stand_in, num_classes=K, crop=crop, stride=int(crop * 2 / 3),
                                      batch=2, protocol='sliding_window')
  pred = predictor.predict(None, image).classes
  assert (pred != unimatch_sliding(image, crop)).mean() < 1e-4


def test_windows_are_padded_only_to_the_network_multiple_and_marked_valid():
  seen = []

  def scores(prepared, images, valid):
    seen.append((images.shape[1:3], valid[0].sum(0).max(), valid[0].sum(1).max()))
    return stand_in_probs(images), np.eye(K, dtype=bool)[[1] * images.shape[0]]

  image = random_image(np.random.RandomState(0), 50, 70)
  predictor = predictor_lib.Predictor(scores, num_classes=K, crop=64, stride=42, pad_multiple=16,
                                      batch=1)
  pred = predictor.predict(None, image)
  assert seen == [((64, 64), 50, 64)] * 2     # windows 50x64: padded to 64 rows, 50 valid
  np.testing.assert_array_equal(pred.present, np.eye(K, dtype=bool)[1])


def test_whole_image_pads_to_the_multiple_and_crops_back():
  seen = []

  def scores(prepared, images, valid):
    seen.append((images.shape, int(valid.sum())))
    return stand_in_probs(images), None

  image = random_image(np.random.RandomState(0), 30, 45)
  predictor = predictor_lib.Predictor(scores, num_classes=K, crop=24, stride=16, protocol='whole',
                                      pad_multiple=16)
  pred = predictor.predict(None, image).classes
  assert seen == [((1, 32, 48, 3), 30 * 45)] and pred.shape == (30, 45)
  padded = np.pad(image, ((0, 2), (0, 3), (0, 0)))
  np.testing.assert_array_equal(pred, stand_in_probs(padded[None])[0, :30, :45].argmax(-1))
  with pytest.raises(ValueError, match='inference.protocol'):
    predictor_lib.Predictor(scores, num_classes=K, crop=24, stride=16, protocol='tiles')


@pytest.mark.slow
def test_windows_sharded_over_two_devices_give_the_one_device_maps():
  assert jax.local_device_count() == 2, 'tests run with 2 simulated CPU devices (conftest)'
  config = tiny_config(
      **{
          'inference.protocol': 'zegclip_sliding_window', 'inference.short_side': 0,
          'inference.stride': 42, 'inference.window_batch': 3, 'model.relevance.mode': 'dense'
      })
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  sharded = predictor_lib.Predictor.from_config(config, model)
  assert sharded.batch == 4          # rounded up to a multiple of the 2 devices
  prepare, scores = predictor_lib.network_scores(model, config.inference.mode)
  single = predictor_lib.Predictor(scores, num_classes=5, **predictor_lib.geometry(config),
                                   pad_multiple=sharded.pad_multiple, batch=4, prepare=prepare)
  rng = np.random.RandomState(0)
  a, b = sharded.prepare(params), single.prepare(params)
  for h, w in ((80, 100), (64, 64), (40, 90)):
    image = random_image(rng, h, w)
    one, two = sharded.predict(a, image), single.predict(b, image)
    np.testing.assert_array_equal(one.classes, two.classes)
    np.testing.assert_array_equal(one.present, two.present)


@pytest.mark.slow
def test_zero_shot_baseline_is_the_frozen_clip_alone():
  config = tiny_config(**{'inference.protocol': 'whole'})
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  predictor = predictor_lib.Predictor.from_config(config, model, zero_shot_baseline=True)
  image = random_image(np.random.RandomState(3), 64, 64)
  pred = predictor.predict(predictor.prepare(params), image)
  # The CLIP itself: MaskCLIP features against 'a photo of a {name}.', softmax, upsampled.
  text = zero_shot.class_text_embeddings(clip, names)
  dense = clip.module.apply({'params': clip.params}, clip_lib.normalize_images(image[None]), (),
                            True, method=registry.CLIPModel.encode_image)['dense']
  probs = np.asarray(zero_shot.pixel_class_probs(dense, text, clip.logit_scale))[0]
  expected = cv2.resize(probs, (64, 64), interpolation=cv2.INTER_LINEAR).argmax(-1)
  assert pred.present is None and (pred.classes == expected).mean() > 0.99
