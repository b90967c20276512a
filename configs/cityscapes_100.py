r"""Cityscapes, 100 labeled images (split 1_30).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 78.0.

  python -m hvl_jax.main --config configs/cityscapes_100.py --workdir runs/cityscapes_100 \
      --config.data.root=/data/cityscapes
"""
from configs import base


def get_config():
  return base.dataset_config('cityscapes', '1_30')
