r"""COCO 2017 (81 classes), 3697 labeled images (split 1_32).
Table 1: 59.9 mIoU with CLIP ViT-B/16, 67.4 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/coco_3697.py[:eva02l] --workdir runs/coco_3697
  --config.data.root=/data/coco
"""
from configs import base

get_config = base.table_1_config(__file__)
