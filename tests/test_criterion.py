"""The Mask2Former criterion against numpy: BCE, dice and class CE, matching costs, point
sampling, mask losses under the shared budget, device locality, ignored pixels."""
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.common import sharding
from hvl_jax.losses import matching, segmentation, semi
from hvl_jax.ops import sampling


def np_bce(x, t):
  return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def np_point_sample(maps, coords):
  """grid_sample (align_corners=False, zero padding) of maps (h, w) at coords (P, 2) in [0, 1]."""
  h, w = maps.shape
  x, y = coords[:, 0] * w - 0.5, coords[:, 1] * h - 0.5
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  out = np.zeros(len(coords))
  for dy in (0, 1):
    for dx in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      weight = (1 - np.abs(x - xi)) * (1 - np.abs(y - yi))
      inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
      out += np.where(inside, weight * maps[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0)
  return out


def budget_case(rng):
  """Image 0 holds 3 classes (6 matched pairs at 2 levels), image 1 one class (2 pairs)."""
  labels = np.zeros((2, 32, 32), np.int32)
  labels[0, :, 10:20], labels[0, :, 20:] = 1, 2
  labels[0, :3] = 255
  target, has_mask = matching.fixed_matching(3, 2,
                                             segmentation.classes_present(jnp.asarray(labels), 3))
  logits = jnp.asarray(rng.randn(2, 8, 8, 6), jnp.float32)
  return logits, jnp.asarray(labels), target, has_mask


def test_bce_dice_ce_against_numpy(rng):
  x = rng.randn(5, 40).astype(np.float32) * 3
  t = (rng.rand(5, 40) > 0.5).astype(np.float32)
  np.testing.assert_allclose(segmentation.sigmoid_ce_loss(x, t, 3.0),
                             np_bce(x, t).mean(1).sum() / 3, rtol=1e-5)
  p = 1 / (1 + np.exp(-x))
  dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
  np.testing.assert_allclose(segmentation.dice_loss(x, t, 3.0), dice.sum() / 3, rtol=1e-5)
  logits = rng.randn(2, 6, 4).astype(np.float32)
  target = rng.randint(0, 4, (2, 6))
  w = np.where(target == 3, 0.1, 1.0)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, target[..., None], -1)[..., 0]
  np.testing.assert_allclose(segmentation.class_ce_loss(logits, target, 0.1),
                             (w * nll).sum() / w.sum(), rtol=1e-5)


def test_matching_cost_against_numpy(rng):
  cfg = segmentation.CriterionConfig(num_classes=3, num_levels=0)
  cls = rng.randn(1, 4, 4).astype(np.float32)
  x = rng.randn(1, 4, 30).astype(np.float32)
  lab = rng.randint(0, 3, (1, 30))
  valid = np.ones((1, 30), np.float32)
  onehot = (lab[:, None, :] == np.arange(3)[None, :, None]).astype(np.float32)
  cost = np.asarray(segmentation.matching_cost(cls, x, onehot, valid, cfg))[0]
  prob = np.exp(cls[0]) / np.exp(cls[0]).sum(-1, keepdims=True)
  for m in range(4):
    for k in range(3):
      t = onehot[0, k]
      p = 1 / (1 + np.exp(-x[0, m]))
      ref = (-2 * prob[m, k] + 5 * np_bce(x[0, m], t).mean()
             + 5 * (1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)))
      np.testing.assert_allclose(cost[m, k], ref, rtol=1e-4, atol=1e-5)


def test_point_sample_is_grid_sample():
  maps = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
  coords = np.asarray([[[0.5 / 4, 0.5 / 3], [0.25, 0.5], [1.0, 1.0]]], np.float32)
  out = np.asarray(sampling.point_sample(jnp.asarray(maps), jnp.asarray(coords)))[0, :, 0]
  # pixel (0, 0) centre; halfway between columns 0 and 1 of row 1; the corner reads 1/4 of pixel (2,
  # 3).
  np.testing.assert_allclose(out, [0.0, 4.5, 11 / 4], atol=1e-6)


def test_mask_losses_against_numpy(rng):
  logits, labels, target, has_mask = budget_case(rng)
  cfg = segmentation.CriterionConfig(num_classes=3, num_levels=2, num_points=64, max_masks=6)
  # threefry: its draws are the same in a batch of rows and alone (the tests default to rbg).
  key = jax.random.key(3, impl='threefry2x32')
  bce, dice, dropped = segmentation.mask_losses(logits, labels, target, has_mask, cfg, key)
  ref_bce = ref_dice = 0.0
  for b, q in zip(*np.nonzero(np.asarray(has_mask))):
    # The pair's points (importance sampling is the code under test's; the losses are not).
    maps = logits[b, :, :, q]
    coords = np.asarray(segmentation.uncertain_point_coords(
        maps[None, ..., None], jax.random.fold_in(key, b * 6 + q)[None], 64, 3.0, 0.75))[0]
    x = np_point_sample(np.asarray(maps), coords)
    lab = np.asarray(labels[b])[np.minimum((coords[:, 1] * 32).astype(int), 31),
                                np.minimum((coords[:, 0] * 32).astype(int), 31)]
    t, wgt = (lab == int(target[b, q])).astype(float), (lab != 255).astype(float)
    ref_bce += (np_bce(x, t) * wgt).sum() / max(wgt.sum(), 1)
    p = 1 / (1 + np.exp(-x)) * wgt
    ref_dice += 1 - (2 * (p * t).sum() + 1) / (p.sum() + (t * wgt).sum() + 1)
  np.testing.assert_allclose(bce, ref_bce / 8, rtol=1e-4)
  np.testing.assert_allclose(dice, ref_dice / 8, rtol=1e-4)
  assert int(dropped) == 0


@pytest.mark.slow
def test_mask_budget_is_shared_by_a_groups_images(rng):
  logits, labels, target, has_mask = budget_case(rng)
  key = jax.random.key(0, impl='threefry2x32')
  run = lambda *args, **kw: segmentation.mask_losses(
      *(args or (logits, labels, target, has_mask)),
      segmentation.CriterionConfig(num_classes=3, num_levels=2, num_points=64, **kw), key)
  full = run(max_masks=6)
  # 4 per image on average: image 0's 6 pairs use what image 1 leaves, nothing is dropped.
  for got in (run(max_masks=4), run(max_masks=6, budget_images=1)):
    np.testing.assert_allclose(got[:2], full[:2], rtol=1e-6)
    assert int(got[2]) == 0
  # Each image on its own budget of 4: image 0 is 2 pairs over it.
  assert int(run(max_masks=4, budget_images=1)[2]) == 2
  assert int(run(max_masks=3)[2]) == 2
  three = [jnp.concatenate([x, x[:1]]) for x in (logits, labels, target, has_mask)]
  with pytest.raises(ValueError, match='budget_images=2 does not divide the 3 labeled images'):
    run(*three, max_masks=4)


def test_criterion_keeps_each_devices_images_local(rng):
  """Sharded over 2 devices, the criterion moves no image data between them."""
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 2, 'tests run with 2 simulated CPU devices (conftest)'
  logits, labels, _, _ = budget_case(rng)
  cls = jnp.asarray(rng.randn(2, 6, 4), jnp.float32)
  cfg = segmentation.CriterionConfig(num_classes=3, num_levels=2, num_points=64, max_masks=4,
                                     budget_images=1)
  loss = lambda c, m, l: segmentation.set_criterion([(c, m)], l, cfg, jax.random.PRNGKey(0))['seg']
  on_batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  args = [jax.device_put(x, on_batch) for x in (cls, logits, labels)]
  hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*args).compile().as_text()
  moved = re.findall(r'= (\S+) (?:all-gather|all-reduce|all-to-all|collective-permute)\(', hlo)
  dims = lambda shape: [int(d) for d in re.findall(r'\d+', shape.split('[')[1].split(']')[0])]
  # Scalars (mask counts) and the importance sampling's uncertainties of the oversampled points
  # (XLA gathers the input of a sharded top-k) may cross; labels, mask logits and their gradients
  # may not. The shapes say which is which, whatever name the op carries.
  oversampled = int(cfg.num_points * cfg.oversample_ratio)
  assert moved
  assert all(
      math.prod(dims(shape)) <= 2 * 3 or dims(shape)[-1] == oversampled for shape in moved), moved


@pytest.mark.slow
def test_ignore_pixels_have_zero_gradient(rng):
  cfg = segmentation.CriterionConfig(num_classes=3, num_levels=1, num_points=256, max_masks=6)
  labels = rng.randint(0, 3, (2, 64, 64))
  labels[:, :32] = 255
  cls = jnp.asarray(rng.randn(2, 5, 4), jnp.float32)
  masks = jnp.asarray(rng.randn(2, 16, 16, 5), jnp.float32)
  loss = lambda m: segmentation.set_criterion([(cls, m)], jnp.asarray(labels), cfg,
                                              jax.random.PRNGKey(0))['seg']
  g = np.asarray(jax.grad(loss)(masks))
  # Logit rows 0..6 are only read by points on ignore pixels (rows < 32 of 64).
  assert np.all(g[:, :7] == 0)
  assert np.abs(g[:, 9:]).max() > 0
  # Semi-supervised terms: invalid pixels get no gradient either.
  probs = jax.nn.softmax(jnp.asarray(rng.randn(1, 4, 4, 3)), -1)
  valid = jnp.asarray(np.arange(16).reshape(1, 4, 4) >= 8)
  pseudo = jnp.zeros((1, 4, 4), jnp.int32)
  gp = jax.grad(lambda p: semi.pseudo_label_loss(p, pseudo, jnp.ones((1, 4, 4)), valid, 0.95)
                + semi.entropy_loss(p, valid))(probs)
  assert np.all(np.asarray(gp)[:, :2] == 0) and np.abs(np.asarray(gp)[:, 2:]).max() > 0
