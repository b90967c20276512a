r"""Cityscapes, 186 labeled images (split 1_16).

EVA02-CLIP-L/14 for both encoders (the paper's headline configuration); paper mIoU
(Table 1, HVL with EVA02-L, as we read the table): 84.9.

  python -m hvl_jax.main --config configs/cityscapes_186_eva02l.py --workdir runs/cityscapes_186_eva02l \
      --config.data.root=/data/cityscapes
"""
from configs import base


def get_config():
  return base.dataset_config('cityscapes', '1_16', backbone='eva02_clip_l14')
