r"""Pascal VOC 2012 + SBD, 732 labeled images (split 732).
Table 1: 89.2 mIoU with CLIP ViT-B/16, 91.5 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/voc_732.py[:eva02l] --workdir runs/voc_732
  --config.data.root=/data/VOC2012
"""
from configs import base

get_config = base.table_1_config(__file__)
