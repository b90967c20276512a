r"""Pascal VOC 2012 + SBD, 366 labeled images (split 366).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 88.6.

  python -m hvl_jax.main --config configs/voc_366.py --workdir runs/voc_366 \
      --config.data.root=/data/VOC2012
"""
from configs import base


def get_config():
  return base.dataset_config('voc', '366')
