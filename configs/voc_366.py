r"""Pascal VOC 2012 + SBD, 366 labeled images (split 366).
Table 1: 88.6 mIoU with CLIP ViT-B/16, 90.9 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/voc_366.py[:eva02l] --workdir runs/voc_366
  --config.data.root=/data/VOC2012
"""
from configs import base

get_config = base.table_1_config(__file__)
