r"""Cityscapes, 100 labeled images (split 1_30).
Table 1: 78.0 mIoU with CLIP ViT-B/16, 79.6 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/cityscapes_100.py[:eva02l] --workdir runs/cityscapes_100
  --config.data.root=/data/cityscapes
"""
from configs import base

get_config = base.table_1_config(__file__)
