r"""Cityscapes, 372 labeled images (split 1_8).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 81.9.

  python -m hvl_jax.main --config configs/cityscapes_372.py --workdir runs/cityscapes_372 \
      --config.data.root=/data/cityscapes
"""
from configs import base


def get_config():
  return base.dataset_config('cityscapes', '1_8')
