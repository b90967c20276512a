r"""Cityscapes, 744 labeled images (split 1_4).
Table 1: 82.4 mIoU with CLIP ViT-B/16, 85.0 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/cityscapes_744.py[:eva02l] --workdir runs/cityscapes_744
  --config.data.root=/data/cityscapes
"""
from configs import base

get_config = base.table_1_config(__file__)
