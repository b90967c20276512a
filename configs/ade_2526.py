r"""ADE20K, 2526 labeled images (split 1_8).
Table 1: 39.4 mIoU with CLIP ViT-B/16, 52.6 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/ade_2526.py[:eva02l] --workdir runs/ade_2526
  --config.data.root=/data/ADEChallengeData2016
"""
from configs import base

get_config = base.table_1_config(__file__)
