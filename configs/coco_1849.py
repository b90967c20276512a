r"""COCO 2017 (81 classes), 1849 labeled images (split 1_64).
Table 1: 59.1 mIoU with CLIP ViT-B/16, 65.1 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/coco_1849.py[:eva02l] --workdir runs/coco_1849
  --config.data.root=/data/coco
"""
from configs import base

get_config = base.table_1_config(__file__)
