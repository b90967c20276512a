r"""COCO 2017 (81 classes), 1849 labeled images (split 1_64).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 59.1.

  python -m hvl_jax.main --config configs/coco_1849.py --workdir runs/coco_1849 \
      --config.data.root=/data/coco
"""
from configs import base


def get_config():
  return base.dataset_config('coco', '1_64')
