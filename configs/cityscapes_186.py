r"""Cityscapes, 186 labeled images (split 1_16).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 80.6.

  python -m hvl_jax.main --config configs/cityscapes_186.py --workdir runs/cityscapes_186 \
      --config.data.root=/data/cityscapes
"""
from configs import base


def get_config():
  return base.dataset_config('cityscapes', '1_16')
