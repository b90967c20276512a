r"""ADE20K, 1263 labeled images (split 1_16).
Table 1: 41.6 mIoU with CLIP ViT-B/16, 49.8 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/ade_1263.py[:eva02l] --workdir runs/ade_1263
  --config.data.root=/data/ADEChallengeData2016
"""
from configs import base

get_config = base.table_1_config(__file__)
