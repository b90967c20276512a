r"""Cityscapes, 744 labeled images (split 1_4).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 82.4.

  python -m hvl_jax.main --config configs/cityscapes_744.py --workdir runs/cityscapes_744 \
      --config.data.root=/data/cityscapes
"""
from configs import base


def get_config():
  return base.dataset_config('cityscapes', '1_4')
