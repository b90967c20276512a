r"""COCO 2017 (81 classes), 463 labeled images (split 1_256).
Table 1: 56.7 mIoU with CLIP ViT-B/16, 61.3 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/coco_463.py[:eva02l] --workdir runs/coco_463
  --config.data.root=/data/coco
"""
from configs import base

get_config = base.table_1_config(__file__)
