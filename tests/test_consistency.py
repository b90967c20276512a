"""The weak-to-strong terms against a PyTorch transcription of UniMatch's unlabeled loss
(unimatch.py: the weak view's pseudo-labels, CutMix of the partner's pseudo-labels, confidence
and ignore mask into each strong view, the feature-perturbation view, and the loss weights)."""
import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn


from hvl_jax.losses import segmentation
from hvl_jax.models import semantic_inference
from hvl_jax.training import objective


def class_distribution(cls_logits, mask_logits):
  """(B, K, h, w) from cls (B, Q, K+1) and masks (B, h, w, Q): Mask2Former's semantic inference,
  normalised over the classes, in torch."""
  p = torch.softmax(cls_logits, -1)[..., :-1]
  seg = torch.einsum('bqk,bhwq->bkhw', p, torch.sigmoid(mask_logits))
  return seg / seg.sum(1, keepdim=True).clamp_min(1e-6)


def unimatch_unlabeled_loss(pred_u_w, pred_u_s1, pred_u_s2, pred_u_w_fp, box1, box2, ignore_mask,
                            thresh):
  """UniMatch's unlabeled half, line by line; its `_mix` batch is each image's partner (the
  batch rolled by one, as `objective.cutmix_partner`). pred_*: (B, K, h, w) class distributions
  (CE takes their log as logits: log_softmax(log p) = log p); ignore_mask (B, h, w), 255 on
  padding. Returns (loss_u_s1, loss_u_s2, loss_u_w_fp)."""
  criterion_u = nn.CrossEntropyLoss(reduction='none')
  pred_u_w = pred_u_w.detach()
  conf_u_w, mask_u_w = pred_u_w.max(dim=1)
  roll = lambda x: torch.roll(x, 1, 0)
  mask_u_w_mix, conf_u_w_mix, ignore_mask_mix = roll(mask_u_w), roll(conf_u_w), roll(ignore_mask)
  mask_u_w_cutmixed1, conf_u_w_cutmixed1, ignore_mask_cutmixed1 = mask_u_w.clone(), conf_u_w.clone(
  ), ignore_mask.clone()
  mask_u_w_cutmixed2, conf_u_w_cutmixed2, ignore_mask_cutmixed2 = mask_u_w.clone(), conf_u_w.clone(
  ), ignore_mask.clone()
  mask_u_w_cutmixed1[box1 == 1] = mask_u_w_mix[box1 == 1]
  conf_u_w_cutmixed1[box1 == 1] = conf_u_w_mix[box1 == 1]
  ignore_mask_cutmixed1[box1 == 1] = ignore_mask_mix[box1 == 1]
  mask_u_w_cutmixed2[box2 == 1] = mask_u_w_mix[box2 == 1]
  conf_u_w_cutmixed2[box2 == 1] = conf_u_w_mix[box2 == 1]
  ignore_mask_cutmixed2[box2 == 1] = ignore_mask_mix[box2 == 1]

  loss_u_s1 = criterion_u(torch.log(pred_u_s1), mask_u_w_cutmixed1)
  loss_u_s1 = loss_u_s1 * ((conf_u_w_cutmixed1 >= thresh) & (ignore_mask_cutmixed1 != 255))
  loss_u_s1 = loss_u_s1.sum() / (ignore_mask_cutmixed1 != 255).sum().item()
  loss_u_s2 = criterion_u(torch.log(pred_u_s2), mask_u_w_cutmixed2)
  loss_u_s2 = loss_u_s2 * ((conf_u_w_cutmixed2 >= thresh) & (ignore_mask_cutmixed2 != 255))
  loss_u_s2 = loss_u_s2.sum() / (ignore_mask_cutmixed2 != 255).sum().item()
  loss_u_w_fp = criterion_u(torch.log(pred_u_w_fp), mask_u_w)
  loss_u_w_fp = loss_u_w_fp * ((conf_u_w >= thresh) & (ignore_mask != 255))
  loss_u_w_fp = loss_u_w_fp.sum() / (ignore_mask != 255).sum().item()
  return loss_u_s1, loss_u_s2, loss_u_w_fp


def random_prediction(rng, b, h, w, q, k):
  return rng.normal(0, 2,
                    (b, q, k + 1)).astype(np.float32), rng.normal(0, 2,
                                                                  (b, h, w, q)).astype(np.float32)


def test_consistency_terms_match_unimatch(rng):
  rng = np.random.default_rng(0)
  b, h, w, q, k, thresh = 3, 8, 8, 6, 4, 0.5
  weak, fp, s1, s2 = (random_prediction(rng, b, h, w, q, k) for _ in range(4))
  probs_w = semantic_inference.semantic_probs(*map(jnp.asarray, weak))
  boxes = [np.zeros((b, h, w), bool) for _ in range(2)]
  boxes[0][:, 2:6, 1:5] = True
  boxes[1][1:, 4:, :3] = True
  valid = np.ones((b, h, w), bool)
  valid[0, -2:] = False                 # crop padding of image 0, mixed into image 1 by its boxes
  cfg = objective.ConsistencyConfig(conf_threshold=thresh)
  terms = objective.consistency_terms(probs_w, tuple(map(jnp.asarray, fp)),
                                      [tuple(map(jnp.asarray, s)) for s in (s1, s2)],
                                      [jnp.asarray(x) for x in boxes], jnp.asarray(valid), cfg,
                                      None, jax.random.PRNGKey(0))
  t = lambda x: torch.tensor(np.asarray(x))
  ref = unimatch_unlabeled_loss(class_distribution(t(weak[0]), t(weak[1])),
                                class_distribution(t(s1[0]), t(s1[1])),
                                class_distribution(t(s2[0]), t(s2[1])),
                                class_distribution(t(fp[0]), t(fp[1])),
                                t(boxes[0]).long(),
                                t(boxes[1]).long(), t(np.where(valid, 0, 255)), thresh)
  for name, r in zip(('semi_s1', 'semi_s2', 'semi_fp'), ref):
    np.testing.assert_allclose(float(terms[name]), r.item(), rtol=1e-5, err_msg=name)
  conf = np.asarray(probs_w).max(-1)
  assert 0 < ((conf >= thresh) & valid).mean() < 1       # the threshold masks some pixels, not all
  # UniMatch's total: (loss_x + 0.25 loss_u_s1 + 0.25 loss_u_s2 + 0.5 loss_u_w_fp) / 2.
  parts_u = 0.25 * (terms['semi_s1'] + terms['semi_s2']) / 2 + 0.5 * terms['semi_fp'] / 2
  base = objective.ConsistencyConfig()
  np.testing.assert_allclose(
      float(parts_u), (0.25 * ref[0].item() + 0.25 * ref[1].item() + 0.5 * ref[2].item()) / 2,
      rtol=1e-5)
  assert (base.strong_weight, base.fp_weight, base.feature_dropout) == (0.25, 0.5, 0.5)


def test_the_set_criterion_teaches_the_confident_pixels_only(rng):
  """loss.consistency.criterion='set': L_seg of the view against the pseudo-labels, unconfident and
  padded pixels ignored, equals the criterion called on that target directly."""
  rng = np.random.default_rng(1)
  b, h, w, k, levels, m = 2, 8, 8, 3, 2, 2
  q = levels * k + m
  pred = tuple(map(jnp.asarray, random_prediction(rng, b, h, w, q, k)))
  pseudo = jnp.asarray(rng.integers(0, k, (b, h, w)), jnp.int32)
  conf = jnp.asarray(rng.uniform(0, 1, (b, h, w)), jnp.float32)
  valid = jnp.asarray(rng.uniform(0, 1, (b, h, w)) > 0.1)
  sup = segmentation.CriterionConfig(num_classes=k, num_levels=levels, num_points=32, max_masks=16)
  cfg = objective.ConsistencyConfig(conf_threshold=0.6, criterion='set')
  key = jax.random.PRNGKey(3)
  got = objective.pseudo_label_term(pred, pseudo, conf, valid, cfg, sup, key)
  target = np.where((np.asarray(conf) >= 0.6) & np.asarray(valid), np.asarray(pseudo), 255)
  want = segmentation.set_criterion([pred], jnp.asarray(target), sup, key)['seg']
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
  # Changing an ignored pixel's pseudo-label changes nothing.
  low = np.argwhere(np.asarray(conf) < 0.6)[0]
  moved = np.asarray(pseudo).copy()
  moved[tuple(low)] = (moved[tuple(low)] + 1) % k
  np.testing.assert_allclose(
      float(objective.pseudo_label_term(pred, jnp.asarray(moved), conf, valid, cfg, sup, key)),
      float(got), rtol=1e-6)
