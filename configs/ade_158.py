r"""ADE20K, 158 labeled images (split 1_128).
Table 1: 34.0 mIoU with CLIP ViT-B/16, 41.6 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/ade_158.py[:eva02l] --workdir runs/ade_158
  --config.data.root=/data/ADEChallengeData2016
"""
from configs import base

get_config = base.table_1_config(__file__)
