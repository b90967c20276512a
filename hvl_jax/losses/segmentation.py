"""Mask2Former criterion with HVL's fixed + Hungarian matching, on sampled points.

Shapes: B images, Q = L*K class-level + M instance queries, mask logits
(B, h, w, Q) channel-last at stride 4, labels (B, H, W) with 255 = ignore.
Ignore pixels carry weight 0 at every point that lands on them, so they never
contribute to a loss or its gradient.
"""
import dataclasses
from typing import Dict

import jax
import jax.numpy as jnp

from hvl_jax.common import config_tree
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.losses import matching
from hvl_jax.ops.sampling import point_sample


@dataclasses.dataclass(frozen=True)
class CriterionConfig:
  """`loss.supervised`: the weights, the sampled points and the mask budget of L_seg.

  max_masks: matched (query, mask) pairs given a mask loss per image, shared by budget_images
  consecutive images (a divisor of the labeled images per device). num_classes (K) and
  num_levels (L, 0 for random queries) are the network's (`for_network`).
  """
  class_weight: float = 2.0
  mask_weight: float = 5.0
  dice_weight: float = 5.0
  no_object_weight: float = 0.1
  num_points: int = 12544
  oversample_ratio: float = 3.0
  importance_sample_ratio: float = 0.75
  max_masks: int = 64
  budget_images: int = 2
  num_classes: int = config_tree.derived(0)
  num_levels: int = config_tree.derived(0)

  def for_network(self, num_classes: int, num_levels: int) -> 'CriterionConfig':
    return dataclasses.replace(self, num_classes=num_classes, num_levels=num_levels)


def labels_at(labels, coords, image=None):
  """Nearest label of each point.

  Args:
    labels: (B, H, W) int32.
    coords: (N, P, 2) normalised (x, y) in [0, 1].
    image: (N,) the image each row of points lies on; None when N == B (row i on image i).
  Returns:
    (N, P) int32.
  """
  b, h, w = labels.shape
  x = jnp.clip(jnp.floor(coords[..., 0] * w).astype(jnp.int32), 0, w - 1)
  y = jnp.clip(jnp.floor(coords[..., 1] * h).astype(jnp.int32), 0, h - 1)
  flat = labels.reshape(b, h * w)
  if image is None:     # a batched gather: each image's points stay on its device
    return jnp.take_along_axis(flat, y * w + x, axis=1)
  return flat[image[:, None], y * w + x]     # no per-row copy of the (H, W) map


def sigmoid_ce_loss(logits, targets, num_masks, weights=None):
  """Mask2Former's BCE: mean over points per mask, summed over masks / num_masks.

  logits, targets: (N, P); weights (N, P) (0 = ignore) or None.
  """
  bce = jnp.logaddexp(0.0, logits) - logits * targets     # numerically stable BCE-with-logits
  if weights is None:
    per_mask = bce.mean(axis=1)
  else:
    per_mask = (bce * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
  return per_mask.sum() / num_masks


def dice_loss(logits, targets, num_masks, weights=None):
  """Mask2Former's dice loss with +1 smoothing, summed over masks / num_masks. (N, P) inputs."""
  p = jax.nn.sigmoid(logits)
  if weights is not None:
    p, targets = p * weights, targets * weights
  numerator = 2 * (p * targets).sum(1)
  denominator = p.sum(1) + targets.sum(1)
  return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def class_ce_loss(logits, target_class, no_object_weight):
  """Weighted mean CE over queries (PyTorch `cross_entropy(weight=...)` semantics).

  logits (B, Q, K+1), target_class (B, Q) in [0, K] (K = no-object).
  """
  k = logits.shape[-1] - 1
  weight = jnp.where(target_class == k, no_object_weight, 1.0)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, target_class[..., None], axis=-1)[..., 0]
  return (weight * nll).sum() / weight.sum()


def matching_cost(cls_logits, point_logits, point_onehot, point_valid, cfg: CriterionConfig):
  """Instance-query cost against every class (Mask2Former's matcher).

  Args:
    cls_logits: (B, M, K+1).
    point_logits: (B, M, P) mask logits at shared uniform points.
    point_onehot: (B, K, P) float targets at the same points.
    point_valid: (B, P) 1 where the point is not ignore.
  Returns:
    (B, M, K) cost.
  """
  prob = jax.nn.softmax(cls_logits.astype(jnp.float32), axis=-1)[..., :-1]
  cost_class = -prob
  x = point_logits.astype(jnp.float32)
  v = point_valid[:, None, :]
  pos, neg = jnp.logaddexp(0.0, -x) * v, jnp.logaddexp(0.0, x) * v
  n_valid = jnp.maximum(point_valid.sum(-1), 1.0)[:, None, None]
  cost_bce = (jnp.einsum('bmp,bkp->bmk', pos, point_onehot)
              + jnp.einsum('bmp,bkp->bmk', neg, 1 - point_onehot)) / n_valid
  sig = jax.nn.sigmoid(x) * v
  numerator = 2 * jnp.einsum('bmp,bkp->bmk', sig, point_onehot)
  denominator = sig.sum(-1)[:, :, None] + point_onehot.sum(-1)[:, None, :]
  cost_dice = 1 - (numerator + 1) / (denominator + 1)
  return cfg.class_weight * cost_class + cfg.mask_weight * cost_bce + cfg.dice_weight * cost_dice


def match(cls_logits, mask_logits, labels, present, cfg: CriterionConfig, rng):
  """Targets of every query: fixed for class-level queries, Hungarian for instance queries.

  Returns (target_class (B, Q), has_mask (B, Q)).
  """
  b, q = cls_logits.shape[:2]
  kq = cfg.num_levels * cfg.num_classes
  parts_cls, parts_mask = [], []
  if kq:
    t, m = matching.fixed_matching(cfg.num_classes, cfg.num_levels, present)
    parts_cls.append(t)
    parts_mask.append(m)
  if q > kq:
    coords = jax.random.uniform(rng, (b, cfg.num_points, 2))
    point_logits = point_sample(mask_logits[..., kq:], coords).transpose(0, 2, 1)   # (B, M, P)
    lab = labels_at(labels, coords)
    valid = (lab != IGNORE_INDEX).astype(jnp.float32)
    onehot = (lab[:, None, :] == jnp.arange(cfg.num_classes)[None, :, None]).astype(jnp.float32)
    cost = matching_cost(cls_logits[:, kq:], point_logits, onehot, valid, cfg)
    t, m = matching.hungarian_matching(cost, present)
    parts_cls.append(t)
    parts_mask.append(m)
  return jnp.concatenate(parts_cls, axis=1), jnp.concatenate(parts_mask, axis=1)


def uncertain_point_coords(logits, keys, num_points, oversample_ratio, importance_ratio):
  """Mask2Former's importance sampling: the most uncertain (-|logit|) of oversampled points + random
  ones.

  Args:
    logits: (N, h, w, 1) mask logits.
    keys: N PRNG keys, one per map, so a map's points do not depend on the other rows
      (with threefry, JAX's default; rbg draws differently in a batch).
  Returns:
    coords (N, num_points, 2), without gradient.
  """
  logits = jax.lax.stop_gradient(logits)
  num_sampled = int(num_points * oversample_ratio)
  num_uncertain = int(importance_ratio * num_points)

  def draw(key):
    k1, k2 = jax.random.split(key)
    return (jax.random.uniform(k1, (num_sampled, 2)),
            jax.random.uniform(k2, (num_points - num_uncertain, 2)))

  coords, rand = jax.vmap(draw)(keys)
  # XLA's partitioner gathers a batch-sharded top-k onto every device where a sort would stay
  # local, but on the CPU top-k makes the demo's step 1.3x faster (on a GPU it is a sort).
  _, idx = jax.lax.top_k(-jnp.abs(point_sample(logits, coords)[..., 0]), num_uncertain)
  chosen = jnp.take_along_axis(coords, idx[..., None], axis=1)
  return jnp.concatenate([chosen, rand], axis=1)


def mask_losses(mask_logits, labels, target_class, has_mask, cfg: CriterionConfig, rng):
  """BCE and dice of the matched (query, class mask) pairs on importance-sampled points.

  Each run of cfg.budget_images consecutive images shares a static budget of max_masks
  pairs per image: an image with many classes uses what the others leave. A group stays on
  one device when it divides the images per device. Matched pairs beyond the budget get no
  mask loss; they are counted, and still count in num_masks.

  Args:
    mask_logits: (B, h, w, Q); labels (B, H, W); target_class, has_mask (B, Q).
    rng: the points of pair (b, q) are drawn from fold_in(rng, b * Q + q), so with threefry
      they do not depend on the budget or the grouping.
  Returns:
    (bce, dice, dropped): the two losses and the number of matched pairs left out.
  """
  b, h, w, q = mask_logits.shape
  n = min(cfg.budget_images, b)
  if b % n:
    raise ValueError(
        f'loss.supervised.budget_images={n} does not divide the {b} labeled images of a step')
  groups = b // n
  budget = min(cfg.max_masks * n, n * q)

  def group_sums(logits, labels, target_class, has_mask, first):
    """Summed BCE and dice of one group's selected pairs: (n, h, w, Q), (n, H, W), (n, Q)."""
    matched = has_mask.reshape(-1)
    pair = jnp.argsort(~matched, stable=True)[:budget]  # (budget,) image * Q + query, matched first
    image, query = pair // q, pair % q
    sel_valid = matched[pair].astype(jnp.float32)
    sel_class = target_class.reshape(-1)[pair]
    logits = logits[image, :, :, query][..., None]        # (budget, h, w, 1)
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(first * q + pair)
    coords = uncertain_point_coords(logits, keys, cfg.num_points, cfg.oversample_ratio,
                                    cfg.importance_sample_ratio)
    point_logits = point_sample(logits, coords)[..., 0]  # (budget, P)
    lab = labels_at(labels, coords, image)
    targets = (lab == sel_class[:, None]).astype(jnp.float32)
    weights = (lab != IGNORE_INDEX).astype(jnp.float32) * sel_valid[:, None]
    return (sigmoid_ce_loss(point_logits, targets, 1.0, weights),
            dice_loss(point_logits, targets, 1.0, weights), jnp.maximum(matched.sum() - budget, 0))

  split = lambda x: x.reshape((groups, n) + x.shape[1:])
  bce, dice, dropped = jax.vmap(group_sums)(split(mask_logits), split(labels), split(target_class),
                                            split(has_mask), jnp.arange(0, b, n))
  num_masks = jnp.maximum(has_mask.sum().astype(jnp.float32), 1.0)
  return bce.sum() / num_masks, dice.sum() / num_masks, dropped.sum()


def classes_present(labels, num_classes):
  """(B, H, W) labels -> (B, K) bool presence (ignore excluded)."""
  onehot = labels[..., None] == jnp.arange(num_classes)
  return onehot.any(axis=(1, 2))


def stage_losses(cls_logits, mask_logits, labels, present, cfg: CriterionConfig, rng):
  """Class CE, BCE, dice and the mask pairs left out of one decoder stage, re-matched."""
  k_match, k_points = jax.random.split(rng)
  target_class, has_mask = match(cls_logits, mask_logits, labels, present, cfg, k_match)
  l_cls = class_ce_loss(cls_logits, target_class, cfg.no_object_weight)
  return (l_cls,) + mask_losses(mask_logits, labels, target_class, has_mask, cfg, k_points)


def set_criterion(predictions, labels, cfg: CriterionConfig, rng) -> Dict[str, jax.Array]:
  """L_seg summed over the final and all auxiliary predictions, each re-matched.

  The stages are vmapped, so the criterion compiles once whatever the decoder depth.

  Args:
    predictions: list of (cls_logits (B, Q, K+1), mask_logits (B, h, w, Q)), one per decoder stage.
    labels: (B, H, W) int32, IGNORE_INDEX (255) = ignore.
  Returns:
    dict: 'seg' (weighted total), 'class', 'bce', 'dice' (each summed over stages) and
    'masks_dropped' (matched pairs over the mask budget, most in any stage).
  """
  present = classes_present(labels, cfg.num_classes)
  cls = jnp.stack([c for c, _ in predictions])
  masks = jnp.stack([m for _, m in predictions])
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(len(predictions)))
  per_stage = jax.vmap(lambda c, m, k: stage_losses(c, m, labels, present, cfg, k))
  l_cls, l_bce, l_dice, dropped = per_stage(cls, masks, keys)
  l_cls, l_bce, l_dice = l_cls.sum(), l_bce.sum(), l_dice.sum()
  seg = cfg.class_weight * l_cls + cfg.mask_weight * l_bce + cfg.dice_weight * l_dice
  return {'seg': seg, 'class': l_cls, 'bce': l_bce, 'dice': l_dice,
          'masks_dropped': dropped.max().astype(jnp.float32)}
