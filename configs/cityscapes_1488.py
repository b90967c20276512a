r"""Cityscapes, 1488 labeled images (split 1_2).
Table 1: 82.6 mIoU with CLIP ViT-B/16, 85.0 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/cityscapes_1488.py[:eva02l] --workdir runs/cityscapes_1488
  --config.data.root=/data/cityscapes
"""
from configs import base

get_config = base.table_1_config(__file__)
