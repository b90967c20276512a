r"""COCO 2017 (81 classes), 3697 labeled images (split 1_32).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 59.9.

  python -m hvl_jax.main --config configs/coco_3697.py --workdir runs/coco_3697 \
      --config.data.root=/data/coco
"""
from configs import base


def get_config():
  return base.dataset_config('coco', '1_32')
