"""The complete HVL objective for one step (the paper, section 3; docs/method.md), every term returned for logging.

  total = (L_seg + w_s (L_s1 + L_s2) + w_fp L_fp) / 2 + w_ent (H_s1 + H_s2) / 2
          + w_div L_div + w_prompt (L_topo + L_anchor) + w_vl (w_align L_align + w_mask L_mask)

One backbone pass covers labeled, weak, both strong and the class-masked
labeled images; one decoder pass covers labeled, weak and strong images; the
feature-perturbation view decodes the weak features again after channel dropout.
Per-pixel unlabeled terms are computed at the mask-logit resolution (stride 4, or 3.5 for
patch-14 backbones).
"""
from typing import Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.losses import regularizers, segmentation, semi
from hvl_jax.models import hvl
from hvl_jax.ops.sampling import patch_majority


class Batch(NamedTuple):
  """One training step's inputs (global batch); unlabeled fields may have 0 rows.

  image_l (Bl, H, W, 3) CLIP-normalised, label_l (Bl, H, W) int32 (255 ignore);
  image_w, image_s1, image_s2 (Bu, H, W, 3); box1, box2 (Bu, H, W) bool CutMix boxes;
  valid_u (Bu, H, W) bool (False on crop padding).
  """
  image_l: jax.Array
  label_l: jax.Array
  image_w: jax.Array
  image_s1: jax.Array
  image_s2: jax.Array
  box1: jax.Array
  box2: jax.Array
  valid_u: jax.Array


def nearest_cells(x, size):
  """(B, H, W, ...) -> (B, h, w, ...) taking the pixel under each cell's centre.

  For an integer ratio f = H/h that is pixel f*i + f//2; non-integer ratios (patch-14
  backbones put the mask logits at stride 3.5) pick floor((i + 1/2) * H/h).
  """
  rows, cols = ((np.arange(n) + 0.5) * big / n for n, big in zip(size, x.shape[1:3]))
  return x[:, rows.astype(int)][:, :, cols.astype(int)]


def cutmix_partner(x):
  """Each unlabeled image's CutMix partner: the batch rolled by one."""
  return jnp.roll(x, 1, axis=0)


def channel_dropout(x, rate: float, rng):
  """Dropout2d on (B, h, w, C): zeroes whole channels per image, rescales the rest."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0], 1, 1, x.shape[-1]))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def class_region(labels, classes, patch: int):
  """Pixels of `classes` (B,) in labels (B, H, W) at patch resolution: (B, H/p, W/p) bool (>= half)."""
  return patch_majority(labels == classes[:, None, None], patch)


# Pixels of ignore that L_vl hides with the class: those within this many steps (8-connected)
# of it through ignore pixels, i.e. the class's own boundary band (VOC's is about 5 pixels wide,
# up to 10 after the 2x rescale), not the rest of the image's ignore.
IGNORE_BAND_STEPS = 12


def hidden_region(labels, classes, ignore_index: int):
  """What L_vl masks in labels (B, H, W): the pixels of `classes` (B,) and the ignore band around
  them (ignore pixels reached from the class in IGNORE_BAND_STEPS steps), (B, H, W) bool."""
  hide = labels == classes[:, None, None]
  band = labels == ignore_index

  def grow(_, region):
    near = jax.lax.reduce_window(region, False, jax.lax.bitwise_or, (1, 3, 3), (1, 1, 1), 'SAME')
    return region | (near & band)

  return jax.lax.fori_loop(0, IGNORE_BAND_STEPS, grow, hide)


def random_present_class(labels, num_classes, rng):
  """A uniformly drawn present class per image (B,), or -1 if none is present."""
  present = segmentation.classes_present(labels, num_classes)
  scores = jnp.where(present, jax.random.uniform(rng, present.shape), -1.0)
  return jnp.where(present.any(-1), scores.argmax(-1), -1)


def labeled_relevance(model: hvl.HVL, labels, num_classes):
  """s_k of labeled images: GT presence (background kept at 1); all ones when gating is off."""
  present = segmentation.classes_present(labels, num_classes).astype(jnp.float32)
  if model.cfg.relevance_mode == 'all':
    return jnp.ones_like(present)
  return model.keep_background(present)


def compute_loss(model: hvl.HVL, params, batch: Batch, rng, config,
                 teacher_params: Optional[dict] = None):
  """Returns (total loss, dict of every term)."""
  parts, terms = weighted_terms(model, params, batch, rng, config, teacher_params)
  total = sum(parts.values())
  terms['total'] = total
  return total, terms


def weighted_terms(model: hvl.HVL, params, batch: Batch, rng, config,
                   teacher_params: Optional[dict] = None):
  """(parts, terms): the weighted summands of the total loss by name (their sum is the total;
  benchmarks/grad_shares.py differentiates each) and every unweighted term for logging."""
  cfg = model.cfg
  crit = segmentation.CriterionConfig.from_config(config)
  bl, bu = batch.image_l.shape[0], batch.image_w.shape[0]
  k_crit, k_fp, k_vl, k_ema = jax.random.split(rng, 4)
  apply = lambda method, *a, p=params, **kw: model.apply({'params': p}, *a, method=method, **kw)
  terms: Dict[str, jax.Array] = {}

  text = apply(hvl.HVL.text_queries)
  rel_l = apply(labeled_relevance, batch.label_l, cfg.num_classes)

  # L_vl: one present class per labeled image masked with the normalisation mean (0 after norm).
  use_vl = config.loss.vl > 0
  masked_images = []
  if use_vl:
    vl_class = random_present_class(batch.label_l, cfg.num_classes, k_vl)
    hide = hidden_region(batch.label_l, vl_class, config.data.ignore_index)[..., None]
    masked_images = [jnp.where(hide, 0.0, batch.image_l)]

  if bu:
    strong = [jnp.where(box[..., None], cutmix_partner(img), img)
              for box, img in ((batch.box1, batch.image_s1), (batch.box2, batch.image_s2))]
    rel_w = apply(hvl.HVL.image_relevance, batch.image_w, text['t_clip'], batch.valid_u)
    rel_s = [jnp.where(box.any((1, 2))[:, None], jnp.maximum(rel_w, cutmix_partner(rel_w)), rel_w)
             for box in (batch.box1, batch.box2)]
    rel_s = jnp.concatenate(rel_s)
  else:
    strong, rel_s = [], rel_l[:0]
  # E_I^0 on the unmasked labeled images: the L_mask reference.
  reference = apply(hvl.HVL.reference_features, batch.image_l) if use_vl else None
  images = jnp.concatenate([batch.image_l] + ([batch.image_w] if bu else []) + strong + masked_images)

  enc = apply(hvl.HVL.encode, images, dense=use_vl)
  n_dec = bl + 3 * bu
  forward_only = config.semi.weak_view_forward_only
  # Decoded rows: labeled, (weak,) strong 1, strong 2. The weak view only gives detached
  # pseudo-labels, so by default its decoder pass runs apart, forward only (no backward, nothing
  # rematerialised for it); its backbone features keep their gradient through the
  # feature-perturbation view.
  weak_rows = slice(bl, bl + bu)
  rows = lambda t: (jnp.concatenate([t[:bl], t[bl + bu:n_dec]]) if forward_only else t[:n_dec])
  relevance = jnp.concatenate([rel_l] + ([] if forward_only or not bu else [rel_w]) + [rel_s])
  preds = apply(hvl.HVL.decode, [rows(t) for t in enc['taps']], relevance, text)
  strong_offset = bl if forward_only else bl + bu    # first strong row in `preds`

  seg = segmentation.set_criterion([(c[:bl], m[:bl]) for c, m in preds], batch.label_l, crit, k_crit)
  terms.update({f'seg_{k}': v for k, v in seg.items()})
  parts = {'seg': seg['seg']}

  if bu:
    cls, masks = preds[-1]
    cells = masks.shape[1:3]
    if teacher_params is not None:
      t_preds = apply(hvl.HVL.__call__, batch.image_w, rel_w, p=teacher_params)['predictions'][-1]
      probs_w = hvl.semantic_probs(*t_preds)
    elif forward_only:
      weak_taps = [jax.lax.stop_gradient(t[weak_rows]) for t in enc['taps']]
      probs_w = hvl.semantic_probs(*apply(hvl.HVL.decode, weak_taps, rel_w, jax.lax.stop_gradient(text))[-1])
    else:
      probs_w = hvl.semantic_probs(cls[weak_rows], masks[weak_rows])
    probs_w = jax.lax.stop_gradient(probs_w)
    conf, pseudo = probs_w.max(-1), probs_w.argmax(-1).astype(jnp.int32)
    valid = nearest_cells(batch.valid_u, cells)
    sc = config.semi

    fp_taps = [channel_dropout(t[weak_rows], config.model.feature_dropout, jax.random.fold_in(k_fp, i))
               for i, t in enumerate(enc['taps'])]
    fp_cls, fp_masks = apply(hvl.HVL.decode, fp_taps, rel_w, text)[-1]
    terms['semi_fp'] = semi.pseudo_label_loss(hvl.semantic_probs(fp_cls, fp_masks), pseudo, conf, valid,
                                              sc.conf_threshold)
    for i, box in enumerate((batch.box1, batch.box2)):
      box = nearest_cells(box, cells)
      mix = lambda x: jnp.where(box, cutmix_partner(x), x)
      lo = strong_offset + bu * i
      probs_s = hvl.semantic_probs(cls[lo:lo + bu], masks[lo:lo + bu])
      valid_s = mix(valid)
      terms[f'semi_s{i + 1}'] = semi.pseudo_label_loss(probs_s, mix(pseudo), mix(conf), valid_s,
                                                      sc.conf_threshold)
      terms[f'entropy_s{i + 1}'] = semi.entropy_loss(probs_s, valid_s)
    terms['pseudo_confident_fraction'] = jax.lax.stop_gradient(
        ((conf >= sc.conf_threshold) & valid).sum() / jnp.maximum(valid.sum(), 1))
    # (L_seg + w_s (L_s1 + L_s2) + w_fp L_fp) / 2 + w_ent (H_s1 + H_s2) / 2
    parts = {'seg': seg['seg'] / 2,
             'semi_strong': sc.strong_weight * (terms['semi_s1'] + terms['semi_s2']) / 2,
             'semi_fp': sc.fp_weight * terms['semi_fp'] / 2,
             'entropy': sc.entropy_weight * (terms['entropy_s1'] + terms['entropy_s2']) / 2}

  lc = config.loss
  if cfg.queries == 'htqg':
    reduction = lc.regularizer_reduction
    terms['div'] = regularizers.diversity_loss(text['level_queries'], reduction)
    terms['topo'] = regularizers.topology_loss(text['t_hat'], text['t_clip'], reduction)
    terms['anchor'] = regularizers.anchor_loss(text['phi'], text['t_clip'], reduction)
    parts.update(div=lc.div * terms['div'], topo=lc.prompt * terms['topo'], anchor=lc.prompt * terms['anchor'])
  if use_vl:
    x_mask = enc['dense'][n_dec:]
    region = class_region(batch.label_l, vl_class, batch.image_l.shape[1] // x_mask.shape[1])
    classes = jnp.broadcast_to(vl_class[:, None, None], region.shape)
    terms['vl_mask'] = regularizers.mask_consistency_loss(x_mask, reference['dense'], region)
    terms['vl_align'] = regularizers.align_loss(x_mask, text['t_clip'], classes, region, lc.tau)
    parts.update(vl_align=lc.vl * lc.align * terms['vl_align'], vl_mask=lc.vl * lc.mask * terms['vl_mask'])
  return parts, terms
