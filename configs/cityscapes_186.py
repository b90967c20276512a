r"""Cityscapes, 186 labeled images (split 1_16).
Table 1: 80.6 mIoU with CLIP ViT-B/16, 84.9 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/cityscapes_186.py[:eva02l] --workdir runs/cityscapes_186
  --config.data.root=/data/cityscapes
"""
from configs import base

get_config = base.table_1_config(__file__)
