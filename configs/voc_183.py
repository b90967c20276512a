r"""Pascal VOC 2012 + SBD, 183 labeled images (split 183).
Table 1: 88.2 mIoU with CLIP ViT-B/16, 90.1 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/voc_183.py[:eva02l] --workdir runs/voc_183
  --config.data.root=/data/VOC2012
"""
from configs import base

get_config = base.table_1_config(__file__)
