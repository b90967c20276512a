r"""COCO 2017 (81 classes), 925 labeled images (split 1_128).
Table 1: 57.5 mIoU with CLIP ViT-B/16, 63.7 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/coco_925.py[:eva02l] --workdir runs/coco_925
  --config.data.root=/data/coco
"""
from configs import base

get_config = base.table_1_config(__file__)
