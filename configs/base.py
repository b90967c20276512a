r"""Base configuration: every field with its default (the paper's recipe, section 4.1).

Dataset/split files (e.g. configs/voc_92.py) start from `dataset_config` and override only
what differs. Any field can be overridden on the command line:

  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 \
      --config.optim.lr=2e-4 --config.model.pixel_decoder.ptrm=False

and in code with dotted names: `with_overrides(config, {'optim.lr': 2e-4})`.
"""
import ast
import functools
import os
from typing import Any, Mapping

import ml_collections



def get_config():
  """The paper's recipe for Pascal VOC with CLIP ViT-B/16."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  # ---- Data.
  c.data = ml_collections.ConfigDict(dict(
      name='voc',              # voc | coco | ade | cityscapes | folder (your own) | synthetic | tfds
      class_names=(),           # override of the class names (required for tfds; folder: classes.txt's)
      root='',                 # dataset root directory
      splits_dir='',           # folder holding <dataset>/<split>/{labeled,unlabeled}.txt ('' = data/splits shipped copy)
      split='92',
      num_classes=21,
      background_classes=(0,),  # classes whose relevance s_k is always 1
      background_name='background',  # folder: the class of this name (if any) is the background class
      crop_size=512,
      # Training rescale (SemiVL): mmseg's keep-ratio Resize(img_scale, ratio_range=scale_range)
      # where img_scale is set (VOC, ADE20K), else the native size times a ratio in scale_range.
      img_scale=(2048, 512),
      scale_range=(0.5, 2.0),
      labeled_batch=8,          # global, per step
      unlabeled_batch=8,        # global, per step
      num_workers=4,
      prefetch=2,
      rare_class_sampling=True,
      rcs_temperature=0.01,
      # DAFormer: an image is drawn for class c if it holds more than rcs_min_pixels of it; its
      # crop is re-drawn (up to 10 times) until it keeps rcs_min_pixels * rcs_min_crop_ratio.
      rcs_min_pixels=3000,
      rcs_min_crop_ratio=0.5,
      # Where the unlabeled images' two strong views are made: 'device' (inside the train step, from
      # its RNG; the host ships the weak view only) | 'host' (numpy/OpenCV in the input pipeline).
      strong_views='device',
      color_jitter=(0.5, 0.5, 0.5, 0.25),
      color_jitter_p=0.8,
      grayscale_p=0.2,
      blur_p=0.5,
      cutmix_p=0.5,
      # synthetic set (used when name == 'synthetic'): its scenes are drawn from synthetic_seed,
      # not from `seed`, so that every training seed sees the same labeled scenes and val set
      # (as an official split); the first n labeled scenes are the same for every n.
      synthetic_seed=0,
      synthetic_size=64,
      synthetic_labeled=16,
      synthetic_unlabeled=128,
      # Scenes of the unlabeled pool (indices) labeled too, e.g. tools.suggest_labels' picks: they
      # join the labeled set and leave the pool.
      synthetic_also_labeled=(),
      synthetic_val=32,
  ))

  # Any TFDS dataset with an image and a segmentation-mask feature (data.name='tfds').
  c.data.tfds = ml_collections.ConfigDict(dict(
      name='', data_dir='', labeled_split='train[:92]', unlabeled_split='train[92:]',
      val_split='validation', image_key='image', label_key='segmentation_mask'))

  # ---- Network: one subtree per module (hvl_jax/models/), each read by that module's config
  # dataclass with its fields as keyword arguments (`hvl.build_model`).
  c.model = ml_collections.ConfigDict(dict(
      backbone='clip',         # 'clip' (HF CLIP checkpoints) | 'eva02_clip_l14' (open_clip EVA02-CLIP)
      out_layers=(4, 8, 12),
      hidden_dim=256,
      queries='htqg',           # 'htqg' | 'random'
      freeze_backbone=False,
      dtype='bfloat16',         # compute dtype; params stay float32
      attention_impl='auto',    # 'auto' (cuDNN on GPU where unmasked) | 'xla' | 'cudnn' (also masked)
      scan_layers=True,         # lax.scan over repeated layers (compiles each once); False unrolls
  ))
  # What each tower's rematerialised layers keep for the backward pass (layer_scan.REMAT_POLICIES):
  # 'nothing_saveable' recomputes a layer whole (least memory, and the fastest measured on a GPU,
  # benchmarks/RESULTS.md); 'dots_with_no_batch_dims_saveable' keeps its projection/MLP outputs;
  # 'none' does not rematerialise.
  c.model.remat = ml_collections.ConfigDict(dict(
      backbone='nothing_saveable', pixel_decoder='nothing_saveable', decoder='nothing_saveable'))
  c.model.clip = ml_collections.ConfigDict(dict(
      pretrained='openai/clip-vit-base-patch16',  # HF dir or hub name; '' = random init, sizes below
      tokenizer='',             # EVA02: dir/hub name with CLIP's vocab.json + merges.txt
      vision_width=768, vision_layers=12, vision_heads=12, vision_mlp_dim=3072,
      patch_size=16, image_size=224,
      text_width=512, text_layers=12, text_heads=8, text_mlp_dim=2048,
      vocab_size=49408, context_length=77, projection_dim=512,
  ))
  c.model.htqg = ml_collections.ConfigDict(dict(levels=3, mlp_hidden=256, prompt_tokens=8))
  c.model.pixel_decoder = ml_collections.ConfigDict(dict(
      layers=6, heads=8, points=4, ffn_dim=1024, query_chunk=0,
      ptrm=True, ptrm_heads=8))   # the PTRM blocks between the encoder layers
  c.model.decoder = ml_collections.ConfigDict(dict(
      layers=9, heads=8, ffn_dim=2048,
      instance_queries=100,     # M; 0 disables Q_vis
      query_refinement=True))   # False: class-level queries are not updated by the DQTD
  c.model.relevance = ml_collections.ConfigDict(dict(
      mode='dense',             # s_k: 'dense' (max over pixels) | 'global' (image embedding) | 'crops' | 'all' (no gating)
      gating='hard',            # 'hard': queries of classes with s_k < threshold filtered out | 'soft': s_k * q
      threshold=0.5))
  c.inference = ml_collections.ConfigDict(dict(
      mode='query_argmax',      # 'query_argmax' | 'mask2former'
      # Evaluation geometry (SemiVL; hvl_jax/inference/predictor.py): 'zegclip_sliding_window' (VOC, ADE20K:
      # short side resized to short_side; COCO: short_side=0) | 'sliding_window' (Cityscapes) | 'whole'.
      protocol='zegclip_sliding_window',
      short_side=512,           # 0 = native size
      stride=426,               # window step in pixels; 0 = 2/3 of the crop
      window_batch=8,           # windows per device call (rounded up to a multiple of the local devices)
      # Any photo in bounded memory: a long side (after the short-side resize) above this is resized
      # down to it, and the class map back up; 0 = 4 x data.crop_size.
      max_side=0,
      zero_shot_baseline=False,  # also evaluate the frozen CLIP alone (dense zero-shot): zero_shot_miou
      # Open-vocabulary inference (hvl_jax/inference/open_vocabulary.py): the names --mode eval / predict
      # (and the end of training, besides the closed-set evaluation) query, in label order;
      # () = the training classes only.
      class_names=()))

  # ---- Objective.
  c.loss = ml_collections.ConfigDict(dict(
      class_weight=2.0, mask_weight=5.0, dice_weight=5.0, no_object_weight=0.1,
      num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75,
      max_masks=64,             # matched (query, mask) pairs given a mask loss, per image
      budget_images=2,          # images sharing their budgets; a divisor of the labeled per device
      div=0.1, prompt=1.0, vl=0.1, mask=1.0, align=1.0, tau=0.07,
      # L_div, L_topo, L_anchor: 'mean' over classes and pairs (no term grows with K) | 'sum' (the
      # paper's formulas as written; docs/method.md has the gradient shares of both)
      regularizer_reduction='mean'))
  c.semi = ml_collections.ConfigDict(dict(
      conf_threshold=0.95, strong_weight=0.25, fp_weight=0.5, entropy_weight=0.1,
      feature_dropout=0.5,      # channel dropout of the feature-perturbation view
      # how pseudo-labels teach: 'pixel_ce' (per-pixel CE, UniMatch) | 'set' (the labeled
      # criterion L_seg, unconfident pixels ignored; hvl_jax/training/objective.py)
      criterion='pixel_ce',
      ema_decay=0.0))

  # ---- Recipe.
  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-4, weight_decay=0.01, backbone_lr_mult=0.1, clip_norm=0.01,
      warmup_steps=1500, poly_power=0.9, b1=0.9, b2=0.999))
  c.train = ml_collections.ConfigDict(dict(
      epochs=80, steps=-1,      # steps > 0 overrides epochs
      grad_accum=1, log_every=50, ckpt_every=1000, keep_checkpoints=3,
      fsdp=False,               # shard parameters and optimizer state over the devices (ZeRO-3 style)
      eval_every=0, max_nonfinite=10,
      # A bucket that does not answer for this long ends the run (hvl_jax/common/checkpoint.py).
      storage_timeout_s=600.0))
  c.resume = ''                 # checkpoint dir used when the workdir has none
  c.init = ''                   # weights-only initialisation
  return c


# Per-dataset differences from the VOC recipe.
# max_masks: an image with c classes has (levels + 1) * c matched (query, mask) pairs; each
# group of loss.budget_images images shares max_masks per image (segmentation.mask_losses),
# and pairs over the budget are counted in the `seg_masks_dropped` metric. VOC images hold a
# few classes (32 allows 8 per image on average); all 19 Cityscapes classes fit in 76.
# Geometry as SemiVL configures it (its experiments.py): img_scale=(2048, 512) for VOC and ADE20K,
# None (a ratio of the native size) for COCO and Cityscapes; evaluation with zegclip windows at
# stride 426 (after a short-side resize to 512 for VOC and ADE20K), UniMatch's sliding window
# for Cityscapes.
_RESIZED = dict(img_scale=(2048, 512), protocol='zegclip_sliding_window', short_side=512, stride=426)
DATASETS = {
    'voc': dict(num_classes=21, background_classes=(0,), crop_size=512, epochs=80, max_masks=32, **_RESIZED),
    'coco': dict(num_classes=81, background_classes=(0,), crop_size=512, epochs=10, max_masks=64,
                 img_scale=(), protocol='zegclip_sliding_window', short_side=0, stride=426),
    'ade': dict(num_classes=150, background_classes=(), crop_size=512, epochs=40, max_masks=64, **_RESIZED),
    # 801 in SemiVL; 800 is the nearest size divisible by the ViT patch and stride 32.
    'cityscapes': dict(num_classes=19, background_classes=(), crop_size=800, epochs=240, max_masks=76,
                       img_scale=(), protocol='sliding_window', short_side=0, stride=0),
}


# EVA02-CLIP-L/14 for both encoders (open_clip's EVA02-L-14, merged2b weights). open_clip
# ships no vocabulary files; its BPE is OpenAI CLIP's, read from any HF CLIP checkpoint.
EVA02_CLIP_L14 = dict(
    pretrained='timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k',
    tokenizer='openai/clip-vit-base-patch16',
    vision_width=1024, vision_layers=24, vision_heads=16, vision_mlp_dim=2730,
    patch_size=14, image_size=224,
    text_width=768, text_layers=12, text_heads=12, text_mlp_dim=3072,
    vocab_size=49408, context_length=77, projection_dim=768)
# Patch 14: the crop is the multiple of 14 nearest to the ViT-B/16 crop (37x37 and 57x57 tokens).
EVA02_CROPS = {'voc': 518, 'coco': 518, 'ade': 518, 'cityscapes': 798}


# Table 1 of the paper: (dataset, labeled images) -> (split folder, mIoU with CLIP ViT-B/16,
# mIoU with EVA02-CLIP-L/14). configs/<dataset>_<labels>.py train one row.
PAPER_MIOU = {
    ('voc', 92): ('92', 87.1, 89.4),
    ('voc', 183): ('183', 88.2, 90.1),
    ('voc', 366): ('366', 88.6, 90.9),
    ('voc', 732): ('732', 89.2, 91.5),
    ('voc', 1464): ('1464', 89.9, 91.8),
    ('coco', 232): ('1_512', 54.5, 59.4),
    ('coco', 463): ('1_256', 56.7, 61.3),
    ('coco', 925): ('1_128', 57.5, 63.7),
    ('coco', 1849): ('1_64', 59.1, 65.1),
    ('coco', 3697): ('1_32', 59.9, 67.4),
    ('ade', 158): ('1_128', 34.0, 41.6),
    ('ade', 316): ('1_64', 38.8, 43.5),
    ('ade', 632): ('1_32', 39.8, 48.2),
    ('ade', 1263): ('1_16', 41.6, 49.8),
    ('ade', 2526): ('1_8', 39.4, 52.6),
    ('cityscapes', 100): ('1_30', 78.0, 79.6),
    ('cityscapes', 186): ('1_16', 80.6, 84.9),
    ('cityscapes', 372): ('1_8', 81.9, 85.0),
    ('cityscapes', 744): ('1_4', 82.4, 85.0),
    ('cityscapes', 1488): ('1_2', 82.6, 85.0),
}

# The `get_config` argument of a dataset config (`configs/voc_92.py:eva02l`) -> model.backbone.
BACKBONE_ARGS = {'clip': 'clip', 'eva02l': 'eva02_clip_l14'}


def dataset_config(name: str, labels: int, backbone: str = 'clip'):
  """The recipe for one row of Table 1: `name` (voc, coco, ade, cityscapes) with `labels`
  labeled images, with the CLIP ViT-B/16 ('clip') or EVA02-CLIP-L/14 ('eva02l') backbone."""
  if (name, labels) not in PAPER_MIOU:
    raise ValueError(f'no split of {name} with {labels} labeled images; Table 1 has '
                     f'{sorted(n for d, n in PAPER_MIOU if d == name)}')
  if backbone not in BACKBONE_ARGS:
    raise ValueError(f'config argument {backbone!r}: expected one of {sorted(BACKBONE_ARGS)}')
  c = get_config()
  d = DATASETS[name]
  c.data.name = name
  c.data.split = PAPER_MIOU[name, labels][0]
  c.data.num_classes = d['num_classes']
  c.data.background_classes = d['background_classes']
  c.data.crop_size = d['crop_size']
  c.train.epochs = d['epochs']
  c.loss.max_masks = d['max_masks']
  c.data.img_scale = d['img_scale']
  c.inference.update(dict(protocol=d['protocol'], short_side=d['short_side'], stride=d['stride']))
  if BACKBONE_ARGS[backbone] == 'eva02_clip_l14':
    use_eva02_clip_l14(c, EVA02_CROPS[name])
  return c


def use_eva02_clip_l14(c, crop: int):
  """`c` with EVA02-CLIP-L/14 for both encoders at the crop `crop` (a multiple of 14)."""
  c.model.backbone = 'eva02_clip_l14'
  c.model.clip.update(EVA02_CLIP_L14)
  c.model.out_layers = (8, 16, 24)   # thirds of the 24 blocks, as (4, 8, 12) of ViT-B's 12
  c.data.crop_size = crop
  # 8+8 over 2 devices in two micro-steps of 2+2 per device, parameters and optimizer state
  # sharded over the devices (24 GB cards; XLA's plan is 23.6 GiB per device without FSDP).
  c.train.grad_accum = 2
  c.train.fsdp = True


def table_1_config(path: str):
  """`get_config(backbone='clip')` of the config file `path`, named `<dataset>_<labels>.py`."""
  name, labels = os.path.basename(path)[:-len('.py')].rsplit('_', 1)
  return functools.partial(dataset_config, name, int(labels))


def parse_value(text: str) -> Any:
  """A command-line value: true/false, a Python literal (number, tuple, ...), else the string."""
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def with_overrides(config, overrides: Mapping[str, Any]):
  """`config` updated in place from {'dotted.field': value} (ml_collections'
  `update_from_flattened_dict`); an unknown field or a value of another type raises a ValueError
  that names the field."""
  for field, value in overrides.items():
    was_locked = config.is_locked
    config.lock()     # a misspelt field must not be added silently
    try:
      config.update_from_flattened_dict({field: value})
    except (KeyError, AttributeError) as e:
      raise ValueError(f'config has no field {field!r}') from e
    except TypeError as e:
      raise ValueError(f'{field}: {value!r} does not fit the field ({e})') from e
    finally:
      if not was_locked:
        config.unlock()
  return config
