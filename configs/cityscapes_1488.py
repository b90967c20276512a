r"""Cityscapes, 1488 labeled images (split 1_2).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 82.6.

  python -m hvl_jax.main --config configs/cityscapes_1488.py --workdir runs/cityscapes_1488 \
      --config.data.root=/data/cityscapes
"""
from configs import base


def get_config():
  return base.dataset_config('cityscapes', '1_2')
