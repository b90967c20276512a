r"""COCO 2017 (81 classes), 925 labeled images (split 1_128).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 57.5.

  python -m hvl_jax.main --config configs/coco_925.py --workdir runs/coco_925 \
      --config.data.root=/data/coco
"""
from configs import base


def get_config():
  return base.dataset_config('coco', '1_128')
