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

from hvl_jax.common.config_tree import to_tree
from hvl_jax.data.data_config import DataConfig
from hvl_jax.inference.evaluator import EvalConfig
from hvl_jax.inference.predictor import InferenceConfig
from hvl_jax.models.hvl import ModelConfig
from hvl_jax.training.objective import ObjectiveConfig
from hvl_jax.training.optim import OptimConfig
from hvl_jax.training.trainer import TrainConfig


def get_config():
  """The paper's recipe for Pascal VOC with CLIP ViT-B/16: each subtree is its component's
  config dataclass with its defaults (their docstrings say what each field does)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = to_tree(DataConfig())            # hvl_jax/data/data_config.py
  c.model = to_tree(ModelConfig())          # hvl_jax/models/hvl.py, one subtree per module
  c.inference = to_tree(InferenceConfig())  # hvl_jax/inference/predictor.py
  c.loss = to_tree(ObjectiveConfig())       # hvl_jax/training/objective.py, one subtree per part
  c.optim = to_tree(OptimConfig())          # hvl_jax/training/optim.py
  c.train = to_tree(TrainConfig())          # hvl_jax/training/trainer.py
  # Named evaluations, each of a kind (hvl_jax/inference/evaluator.py KINDS) with its settings:
  # the val split's mIoU, and the network on inference.class_names where some are given.
  c.evals = ml_collections.ConfigDict(dict(
      val=to_tree(EvalConfig(kind='miou', strips=4)),
      open_vocabulary=to_tree(EvalConfig(kind='open_vocabulary'))))
  c.resume = ''                 # checkpoint dir used when the workdir has none
  c.init = ''                   # weights-only initialisation
  return c


# Per-dataset differences from the VOC recipe.
# max_masks: an image with c classes has (levels + 1) * c matched (query, mask) pairs; each
# group of loss.supervised.budget_images images shares max_masks per image
# (segmentation.mask_losses),
# and pairs over the budget are counted in the `seg_masks_dropped` metric. VOC images hold a
# few classes (32 allows 8 per image on average); all 19 Cityscapes classes fit in 76.
# Geometry as SemiVL configures it (its experiments.py): img_scale=(2048, 512) for VOC and ADE20K,
# None (a ratio of the native size) for COCO and Cityscapes; evaluation with zegclip windows at
# stride 426 (after a short-side resize to 512 for VOC and ADE20K), UniMatch's sliding window
# for Cityscapes.
_RESIZED = dict(img_scale=(2048, 512), protocol='zegclip_sliding_window', short_side=512,
                stride=426)
DATASETS = {
    'voc': dict(num_classes=21, background_classes=(0,), crop_size=512, epochs=80, max_masks=32,
                **_RESIZED),
    'coco': dict(num_classes=81, background_classes=(0,), crop_size=512, epochs=10, max_masks=64,
                 img_scale=(), protocol='zegclip_sliding_window', short_side=0, stride=426),
    'ade': dict(num_classes=150, background_classes=(), crop_size=512, epochs=40, max_masks=64,
                **_RESIZED),
    # 801 in SemiVL; 800 is the nearest size divisible by the ViT patch and stride 32.
    'cityscapes': dict(num_classes=19, background_classes=(), crop_size=800, epochs=240,
                       max_masks=76, img_scale=(), protocol='sliding_window', short_side=0,
                       stride=0),
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
  c.loss.supervised.max_masks = d['max_masks']
  c.data.img_scale = d['img_scale']
  c.inference.update(dict(protocol=d['protocol'], short_side=d['short_side'], stride=d['stride']))
  if BACKBONE_ARGS[backbone] == 'eva02_clip_l14':
    use_eva02_clip_l14(c, EVA02_CROPS[name])
  return c


def set_remat(c, policy: str):
  """Every tower of `c.model` rematerialised with `policy` ('none': not rematerialised)."""
  c.model.backbone_remat = c.model.pixel_decoder.remat = c.model.decoder.remat = policy


def remat_summary(model) -> str:
  """'backbone nothing_saveable, pixel_decoder none, decoder none' of a `model` subtree."""
  return (f'backbone {model.backbone_remat}, pixel_decoder {model.pixel_decoder.remat}, '
          f'decoder {model.decoder.remat}')


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
