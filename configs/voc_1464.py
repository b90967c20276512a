r"""Pascal VOC 2012 + SBD, 1464 labeled images (split 1464).
Table 1: 89.9 mIoU with CLIP ViT-B/16, 91.8 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/voc_1464.py[:eva02l] --workdir runs/voc_1464
  --config.data.root=/data/VOC2012
"""
from configs import base

get_config = base.table_1_config(__file__)
