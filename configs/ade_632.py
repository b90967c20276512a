r"""ADE20K, 632 labeled images (split 1_32).
Table 1: 39.8 mIoU with CLIP ViT-B/16, 48.2 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/ade_632.py[:eva02l] --workdir runs/ade_632
  --config.data.root=/data/ADEChallengeData2016
"""
from configs import base

get_config = base.table_1_config(__file__)
