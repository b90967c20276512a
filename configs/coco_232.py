r"""COCO 2017 (81 classes), 232 labeled images (split 1_512).
Table 1: 54.5 mIoU with CLIP ViT-B/16, 59.4 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/coco_232.py[:eva02l] --workdir runs/coco_232
  --config.data.root=/data/coco
"""
from configs import base

get_config = base.table_1_config(__file__)
