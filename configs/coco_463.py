r"""COCO 2017 (81 classes), 463 labeled images (split 1_256).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 56.7.

  python -m hvl_jax.main --config configs/coco_463.py --workdir runs/coco_463 \
      --config.data.root=/data/coco
"""
from configs import base


def get_config():
  return base.dataset_config('coco', '1_256')
