r"""Ablation presets of the paper's Tables 3 (components) and 4 (regularizers) on VOC.

  python -m hvl_jax.main --config configs/ablations.py:no_ptrm,92 --workdir runs/abl_no_ptrm_92 \
      --config.data.root=/data/VOC2012

The argument is `variant[,labels]` (labeled VOC images, a row of Table 1; default 92). Variants:
  Table 3: random_queries (Mask2Former baseline: random object queries, Hungarian matching),
           htqg_only (textual queries, no PTRM, no Q_vis, no refinement), no_ptrm, no_instance,
           no_refinement, full.
  Table 4: no_regularizers, prompt_only, mask_only, align_only, prompt_mask, no_prompt, no_mask,
           no_align, full.
  Consistency: set_consistency (pseudo-labels taught with L_seg, not per-pixel CE).
"""
from configs import base

VARIANTS = {
    'full': {},
    'random_queries': {'model.queries': 'random', 'model.pixel_decoder.ptrm': False},
    'htqg_only': {
        'model.pixel_decoder.ptrm': False, 'model.decoder.instance_queries': 0,
        'model.decoder.query_refinement': False
    },
    'no_ptrm': {'model.pixel_decoder.ptrm': False},
    'no_instance': {'model.decoder.instance_queries': 0},
    'no_refinement': {'model.decoder.query_refinement': False},
    # Table 4's rows without one regularizer, each one field.
    'no_prompt': {'loss.prompt.weight': 0.0},
    'no_mask': {'loss.vision_language.mask': 0.0},
    'no_align': {'loss.vision_language.align': 0.0},
    'no_regularizers': {
        'loss.prompt.weight': 0.0, 'loss.vision_language.mask': 0.0,
        'loss.vision_language.align': 0.0
    },
    'prompt_only': {'loss.vision_language.mask': 0.0, 'loss.vision_language.align': 0.0},
    'mask_only': {'loss.prompt.weight': 0.0, 'loss.vision_language.align': 0.0},
    'align_only': {'loss.prompt.weight': 0.0, 'loss.vision_language.mask': 0.0},
    'prompt_mask': {'loss.vision_language.align': 0.0},
    # The unlabeled views taught with the labeled criterion L_seg instead of per-pixel CE.
    'set_consistency': {'loss.consistency.criterion': 'set'},
}


def get_config(arg: str = 'full'):
  variant, _, split = arg.partition(',')
  if variant not in VARIANTS:
    raise ValueError(f'unknown ablation {variant!r}; valid: {sorted(VARIANTS)}')
  return base.with_overrides(base.dataset_config('voc', int(split or 92)), VARIANTS[variant])
