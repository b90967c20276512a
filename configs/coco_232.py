r"""COCO 2017 (81 classes), 232 labeled images (split 1_512).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 54.5.

  python -m hvl_jax.main --config configs/coco_232.py --workdir runs/coco_232 \
      --config.data.root=/data/coco
"""
from configs import base


def get_config():
  return base.dataset_config('coco', '1_512')
