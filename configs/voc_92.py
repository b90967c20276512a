r"""Pascal VOC 2012 + SBD, 92 labeled images (split 92).
Table 1: 87.1 mIoU with CLIP ViT-B/16, 89.4 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/voc_92.py[:eva02l] --workdir runs/voc_92
  --config.data.root=/data/VOC2012
"""
from configs import base

get_config = base.table_1_config(__file__)
