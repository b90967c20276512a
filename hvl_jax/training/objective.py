"""The complete HVL objective for one step (the paper, section 3; docs/method.md) as four named
parts, every term returned for logging:

  supervised          L_seg, the Mask2Former criterion on the labeled images;
  consistency         weak view -> pseudo-labels -> two CutMix strong views and the
                      feature-perturbation view, plus entropy (SemiVL / UniMatch);
  prompt              the HTQG's regularizers L_div and L_prompt = L_topo + L_anchor;
  vision_language     L_vl = L_align + L_mask on labeled images with one class masked out.

  total = (L_seg + w_s (L_s1 + L_s2) + w_fp L_fp) / 2 + w_ent (H_s1 + H_s2) / 2
          + w_div L_div + w_prompt (L_topo + L_anchor) + w_vl (w_align L_align + w_mask L_mask)

(without unlabeled images, total = L_seg + the regularizers). Each part has its own small frozen
config, the `loss` subtree of the same name (`objective_config`, read once outside tracing); a
weight of 0 removes its term, and its part when all of the part's weights are 0, without touching
the others. `forward` runs the passes the parts share: one backbone pass over labeled, weak and
both strong images (the class-masked labeled images apart: only their dense features are read),
one decoder pass over labeled and strong images; the weak view and the feature-perturbation view
(the weak features again after channel dropout) are decoded apart. Per-pixel unlabeled terms are
computed at the mask-logit resolution (stride 4, or 3.5 for patch-14 backbones).
"""
import dataclasses
from typing import Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.common import config_tree
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.losses import regularizers, segmentation, semi
from hvl_jax.models import hvl
from hvl_jax.models import semantic_inference
from hvl_jax.ops.sampling import patch_majority

Terms = Dict[str, jax.Array]


class Batch(NamedTuple):
  """One training step's inputs (global batch); unlabeled fields may have 0 rows.

  image_l (Bl, H, W, 3) CLIP-normalised, label_l (Bl, H, W) int32 (255 ignore);
  image_w, image_s1, image_s2 (Bu, H, W, 3); box1, box2 (Bu, H, W) bool CutMix boxes;
  valid_u (Bu, H, W) bool (False on crop padding); label_u (Bu, H, W) int32, the unlabeled
  images' own labels where the data has them (the small world): they score the pseudo-labels
  (`pseudo_accuracy`) and never reach the loss.
  """
  image_l: jax.Array
  label_l: jax.Array
  image_w: jax.Array
  image_s1: jax.Array
  image_s2: jax.Array
  box1: jax.Array
  box2: jax.Array
  valid_u: jax.Array
  label_u: Optional[jax.Array] = None


# How the pseudo-labels teach the strong and feature-perturbation views
# (loss.consistency.criterion):
#   'pixel_ce'  per-pixel cross-entropy of the class distribution (UniMatch's criterion_u);
#   'set'       the labeled images' criterion L_seg (the Mask2Former set loss on the last
#               prediction), the unconfident pixels ignored: both halves of the batch then
#               speak in one loss, as UniMatch's CE on both halves does (docs/small_world.md).
CRITERIA = ('pixel_ce', 'set')


@dataclasses.dataclass(frozen=True)
class ConsistencyConfig:
  """`loss.consistency`: the pseudo-labels' confidence threshold, the weights of the strong
  views, the feature-perturbation view and the entropy, the perturbation's channel dropout, the
  criterion the pseudo-labels teach with (CRITERIA) and the teacher: the student itself
  (ema_decay 0, as UniMatch and SemiVL) or an EMA of it with this decay."""
  conf_threshold: float = 0.95
  strong_weight: float = 0.25
  fp_weight: float = 0.5
  entropy_weight: float = 0.1
  feature_dropout: float = 0.5
  criterion: str = 'pixel_ce'
  ema_decay: float = 0.0

  def __post_init__(self):
    if self.criterion not in CRITERIA:
      raise ValueError(
          f'loss.consistency.criterion must be one of {CRITERIA}, got {self.criterion!r}')


@dataclasses.dataclass(frozen=True)
class PromptConfig:
  """`loss.prompt`: the weights of L_div (div) and of L_prompt = L_topo + L_anchor (weight), and
  their reduction: 'mean' over classes and pairs (no term grows with K) | 'sum' (the paper's
  formulas as written; docs/method.md has the gradient shares of both)."""
  div: float = 0.1
  weight: float = 1.0
  reduction: str = 'mean'

  def __post_init__(self):
    if self.reduction not in ('mean', 'sum'):
      raise ValueError(f"loss.prompt.reduction must be 'mean' or 'sum', got {self.reduction!r}")

  @property
  def enabled(self) -> bool:
    return self.div > 0 or self.weight > 0


@dataclasses.dataclass(frozen=True)
class VisionLanguageConfig:
  """`loss.vision_language`: w_vl (weight), the weights of L_align and L_mask inside it, and the
  temperature of L_align."""
  weight: float = 0.1
  align: float = 1.0
  mask: float = 1.0
  tau: float = 0.07

  @property
  def enabled(self) -> bool:
    return self.weight > 0 and (self.align > 0 or self.mask > 0)


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """`loss`: the four parts' configs."""
  supervised: segmentation.CriterionConfig = segmentation.CriterionConfig()
  consistency: ConsistencyConfig = ConsistencyConfig()
  prompt: PromptConfig = PromptConfig()
  vision_language: VisionLanguageConfig = VisionLanguageConfig()


def objective_config(config, network: hvl.HVLConfig) -> ObjectiveConfig:
  """The `loss` subtree for `network` (its classes and query levels size L_seg's matching)."""
  cfg = config_tree.build(ObjectiveConfig, config.loss, 'loss')
  return dataclasses.replace(cfg, supervised=cfg.supervised.for_network(network.num_classes,
                                                                        network.num_levels))


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
  """Pixels of `classes` (B,) in labels (B, H, W) at patch resolution: (B, H/p, W/p) bool (>=
  half)."""
  return patch_majority(labels == classes[:, None, None], patch)


# Pixels of ignore that L_vl hides with the class: those within this many steps (8-connected)
# of it through ignore pixels, i.e. the class's own boundary band (VOC's is about 5 pixels wide,
# up to 10 after the 2x rescale), not the rest of the image's ignore.
IGNORE_BAND_STEPS = 12


def hidden_region(labels, classes):
  """What L_vl masks in labels (B, H, W): the pixels of `classes` (B,) and the ignore band around
  them (ignore pixels reached from the class in IGNORE_BAND_STEPS steps), (B, H, W) bool."""
  hide = labels == classes[:, None, None]
  band = labels == IGNORE_INDEX

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
  if model.cfg.relevance.mode == 'all':
    return jnp.ones_like(present)
  return model.keep_background(present)


class Forward(NamedTuple):
  """What the parts share from one step's passes.

  text: `HVL.text_queries`; taps: the backbone's taps over the labeled, weak, strong 1 and
  strong 2 rows; dense: (Bl, h, w, E) dense features of the masked rows
  (None without L_vl); predictions: per decoder layer (cls (Bl, Q, K+1), masks (Bl, h, w, Q)) of
  the labeled rows, the last of the labeled rows then the strong rows (Bl + 2 Bu); rel_w: (Bu, K)
  s_k of the weak views; vl_class: (Bl,) the masked class (None without L_vl); reference: E_I^0's
  dense features of the unmasked labeled images (None without L_mask).
  """
  text: dict
  taps: List[jax.Array]
  dense: Optional[jax.Array]
  predictions: List[Tuple[jax.Array, jax.Array]]
  rel_w: Optional[jax.Array]
  vl_class: Optional[jax.Array]
  reference: Optional[jax.Array]


def cutmix_views(batch: Batch):
  """The two CutMix strong views (Bu, H, W, 3): each image with its partner's box pasted in."""
  return [jnp.where(box[..., None], cutmix_partner(img), img)
          for box, img in ((batch.box1, batch.image_s1), (batch.box2, batch.image_s2))]


def forward(model: hvl.HVL, params, batch: Batch, vl_key, cfg: ObjectiveConfig,
            t_clip=None) -> Forward:
  """The shared passes (module docstring); the weak rows are encoded but not decoded here. The
  masked rows are encoded apart: only their dense features are read, which skip the last block.
  t_clip: `HVL.fixed_text_embeddings` when computed once outside the step (None: here)."""
  apply = lambda method, *a, **kw: model.apply({'params': params}, *a, method=method, **kw)
  bl, bu = batch.image_l.shape[0], batch.image_w.shape[0]
  vl = cfg.vision_language
  text = apply(hvl.HVL.text_queries, t_clip)
  rel_l = apply(labeled_relevance, batch.label_l, model.cfg.num_classes)
  dense, vl_class, reference = None, None, None
  if vl.enabled:     # one present class per labeled image masked with the normalisation mean (0)
    vl_class = random_present_class(batch.label_l, model.cfg.num_classes, vl_key)
    hide = hidden_region(batch.label_l, vl_class)[..., None]
    dense = apply(hvl.HVL.encode, jnp.where(hide, 0.0, batch.image_l), dense=True,
                  taps=False)['dense']
    if vl.mask > 0:    # E_I^0 on the unmasked labeled images: the L_mask reference
      reference = apply(hvl.HVL.reference_features, batch.image_l)['dense']
  strong, rel_w, rel_s = [], None, []
  if bu:
    strong = cutmix_views(batch)
    rel_w = apply(hvl.HVL.image_relevance, batch.image_w, text['t_clip'], batch.valid_u)
    rel_s = [jnp.where(box.any((1, 2))[:, None], jnp.maximum(rel_w, cutmix_partner(rel_w)), rel_w)
             for box in (batch.box1, batch.box2)]
  images = jnp.concatenate([batch.image_l] + ([batch.image_w] if bu else []) + strong)
  enc = apply(hvl.HVL.encode, images)
  rows = lambda t: jnp.concatenate([t[:bl], t[bl + bu:bl + 3 * bu]])    # labeled and strong rows
  # Deep supervision reads every layer of the labeled rows; the strong views' last layer alone.
  predictions = apply(hvl.HVL.decode, [rows(t) for t in enc['taps']],
                      jnp.concatenate([rel_l] + rel_s), text, every_layer_rows=bl)
  return Forward(text, enc['taps'], dense, predictions, rel_w, vl_class, reference)


def supervised_loss(predictions, labels, cfg: segmentation.CriterionConfig, key) -> Terms:
  """L_seg of the labeled rows (the first labels.shape[0] of each prediction): `seg` and the
  criterion's terms (`seg_*`)."""
  bl = labels.shape[0]
  seg = segmentation.set_criterion([(c[:bl], m[:bl]) for c, m in predictions], labels, cfg, key)
  return {f'seg_{k}': v for k, v in seg.items()}


def weak_probs(model: hvl.HVL, params, fwd: Forward, bl: int, bu: int, teacher_params, images_w):
  """The weak views' class distribution (Bu, h, w, K), no gradient: the EMA teacher's forward
  pass when there is one, else the network's decoder over the weak rows' features."""
  if teacher_params is not None:
    preds = model.apply({'params': teacher_params}, images_w, fwd.rel_w,
                        every_layer_rows=0)['predictions'][-1]
  else:
    taps = [jax.lax.stop_gradient(t[bl:bl + bu]) for t in fwd.taps]
    preds = model.apply({'params': params}, taps, fwd.rel_w, jax.lax.stop_gradient(fwd.text),
                        every_layer_rows=0, method=hvl.HVL.decode)[-1]
  return jax.lax.stop_gradient(semantic_inference.semantic_probs(*preds))


def pseudo_label_term(prediction, pseudo, conf, valid, cfg: ConsistencyConfig,
                      supervised: segmentation.CriterionConfig, key):
  """One view taught by pseudo-labels (B, h, w) of confidence conf (B, h, w): the cross-entropy of
  its class distribution ('pixel_ce') or L_seg with the unconfident pixels ignored ('set');
  prediction: the view's last (cls (B, Q, K+1), masks (B, h, w, Q))."""
  if cfg.criterion == 'set':
    target = jnp.where((conf >= cfg.conf_threshold) & valid, pseudo, IGNORE_INDEX)
    return segmentation.set_criterion([prediction], target, supervised, key)['seg']
  return semi.pseudo_label_loss(semantic_inference.semantic_probs(*prediction), pseudo, conf, valid,
                                cfg.conf_threshold)


def consistency_loss(
    model: hvl.HVL,
    params,
    fwd: Forward,
    batch: Batch,
    cfg: ConsistencyConfig,
    fp_key,
    teacher_params=None,
    supervised: Optional[segmentation.CriterionConfig] = None,
) -> Tuple[Terms, Terms]:
  """(parts, terms): the weak views' pseudo-labels, the feature-perturbation view and the strong
  views' predictions, scored by `consistency_terms`. `supervised`: the labeled criterion, which
  loss.consistency.criterion='set' teaches with."""
  bl, bu = batch.image_l.shape[0], batch.image_w.shape[0]
  cls, masks = fwd.predictions[-1]
  probs_w = weak_probs(model, params, fwd, bl, bu, teacher_params, batch.image_w)
  fp_taps = [channel_dropout(t[bl:bl + bu], cfg.feature_dropout, jax.random.fold_in(fp_key, i))
             for i, t in enumerate(fwd.taps)]
  fp = model.apply({'params': params}, fp_taps, fwd.rel_w, fwd.text, every_layer_rows=0,
                   method=hvl.HVL.decode)[-1]
  strong = [(cls[lo:lo + bu], masks[lo:lo + bu]) for lo in (bl, bl + bu)]
  cells = masks.shape[1:3]
  boxes = [nearest_cells(box, cells) for box in (batch.box1, batch.box2)]
  terms = consistency_terms(probs_w, fp, strong, boxes, nearest_cells(batch.valid_u, cells), cfg,
                            supervised, jax.random.fold_in(fp_key, len(fwd.taps)))
  if batch.label_u is not None:
    terms.update(
        semi.pseudo_label_accuracy(probs_w.argmax(-1), probs_w.max(-1),
                                   nearest_cells(batch.label_u, cells),
                                   nearest_cells(batch.valid_u, cells), cfg.conf_threshold))
  parts = {'semi_strong': cfg.strong_weight * (terms['semi_s1'] + terms['semi_s2']) / 2,
           'semi_fp': cfg.fp_weight * terms['semi_fp'] / 2,
           'entropy': cfg.entropy_weight * (terms['entropy_s1'] + terms['entropy_s2']) / 2}
  return parts, terms


def consistency_terms(probs_w, fp, strong, boxes, valid, cfg: ConsistencyConfig,
                      supervised: Optional[segmentation.CriterionConfig], key) -> Terms:
  """UniMatch's weak-to-strong terms at the mask-logit resolution (h, w).

  Args:
    probs_w: (Bu, h, w, K) the weak views' class distribution (no gradient): its argmax is the
      pseudo-label, its max the confidence.
    fp: the feature-perturbation view's last prediction (cls (Bu, Q, K+1), masks (Bu, h, w, Q)).
    strong: the two strong views' last predictions, as `fp`.
    boxes: the two CutMix boxes (Bu, h, w) bool; inside a box, a strong view shows its partner
      (`cutmix_partner`), so its pseudo-label, confidence and valid pixels are the partner's.
    valid: (Bu, h, w) bool, False on crop padding.
  Returns:
    semi_fp, semi_s1, semi_s2 (`pseudo_label_term`), entropy_s1, entropy_s2 and the
    confident fraction of the weak views.
  """
  conf, pseudo = probs_w.max(-1), probs_w.argmax(-1).astype(jnp.int32)
  keys = jax.random.split(key, 3)
  terms = {'semi_fp': pseudo_label_term(fp, pseudo, conf, valid, cfg, supervised, keys[0])}
  for i, (prediction, box) in enumerate(zip(strong, boxes)):
    mix = lambda x, box=box: jnp.where(box, cutmix_partner(x), x)
    valid_s = mix(valid)
    terms[f'semi_s{i + 1}'] = pseudo_label_term(prediction, mix(pseudo), mix(conf), valid_s, cfg,
                                                supervised, keys[i + 1])
    terms[f'entropy_s{i + 1}'] = semi.entropy_loss(semantic_inference.semantic_probs(*prediction),
                                                   valid_s)
  terms['pseudo_confident_fraction'] = jax.lax.stop_gradient(
      ((conf >= cfg.conf_threshold) & valid).sum() / jnp.maximum(valid.sum(), 1))
  return terms


def prompt_loss(text: dict, cfg: PromptConfig) -> Tuple[Terms, Terms]:
  """(parts, terms): L_div of the level queries, L_topo and L_anchor of the HTQG's outputs."""
  terms, parts = {}, {}
  if cfg.div > 0:
    terms['div'] = regularizers.diversity_loss(text['level_queries'], cfg.reduction)
    parts['div'] = cfg.div * terms['div']
  if cfg.weight > 0:
    terms['topo'] = regularizers.topology_loss(text['t_hat'], text['t_clip'], cfg.reduction)
    terms['anchor'] = regularizers.anchor_loss(text['phi'], text['t_clip'], cfg.reduction)
    parts.update(topo=cfg.weight * terms['topo'], anchor=cfg.weight * terms['anchor'])
  return parts, terms


def vision_language_loss(fwd: Forward, labels, cfg: VisionLanguageConfig) -> Tuple[Terms, Terms]:
  """(parts, terms): L_align of the masked images' dense features in the masked class's region
  against its text embedding, L_mask against the reference encoder's features."""
  region = class_region(labels, fwd.vl_class, labels.shape[1] // fwd.dense.shape[1])
  terms, parts = {}, {}
  if cfg.mask > 0:
    terms['vl_mask'] = regularizers.mask_consistency_loss(fwd.dense, fwd.reference, region)
    parts['vl_mask'] = cfg.weight * cfg.mask * terms['vl_mask']
  if cfg.align > 0:
    classes = jnp.broadcast_to(fwd.vl_class[:, None, None], region.shape)
    terms['vl_align'] = regularizers.align_loss(fwd.dense, fwd.text['t_clip'], classes, region,
                                                cfg.tau)
    parts['vl_align'] = cfg.weight * cfg.align * terms['vl_align']
  return parts, terms


def weighted_terms(model: hvl.HVL, params, batch: Batch, rng, cfg: ObjectiveConfig,
                   teacher_params: Optional[dict] = None, t_clip=None) -> Tuple[Terms, Terms]:
  """(parts, terms): the weighted summands of the total loss by name (their sum is the total;
  benchmarks/grad_shares.py differentiates each) and every unweighted term for logging; t_clip as
  in `forward`."""
  k_crit, k_fp, k_vl, _ = jax.random.split(rng, 4)
  fwd = forward(model, params, batch, k_vl, cfg, t_clip)
  terms = supervised_loss(fwd.predictions, batch.label_l, cfg.supervised, k_crit)
  parts = {'seg': terms['seg_seg']}
  branches = []
  if batch.image_w.shape[0]:
    parts['seg'] = terms['seg_seg'] / 2
    branches.append(consistency_loss(model, params, fwd, batch, cfg.consistency, k_fp,
                                     teacher_params, cfg.supervised))
  if model.cfg.queries == 'htqg' and cfg.prompt.enabled:
    branches.append(prompt_loss(fwd.text, cfg.prompt))
  if cfg.vision_language.enabled:
    branches.append(vision_language_loss(fwd, batch.label_l, cfg.vision_language))
  for part_weighted, part_terms in branches:
    parts.update(part_weighted)
    terms.update(part_terms)
  return parts, terms


def compute_loss(model: hvl.HVL, params, batch: Batch, rng, cfg: ObjectiveConfig,
                 teacher_params: Optional[dict] = None, t_clip=None):
  """Returns (total loss, dict of every term)."""
  parts, terms = weighted_terms(model, params, batch, rng, cfg, teacher_params, t_clip)
  total = sum(parts.values())
  terms['total'] = total
  return total, terms
