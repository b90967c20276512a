r"""ADE20K, 316 labeled images (split 1_64).
Table 1: 38.8 mIoU with CLIP ViT-B/16, 43.5 with EVA02-CLIP-L/14 (`:eva02l`).

  python -m hvl_jax.main --config configs/ade_316.py[:eva02l] --workdir runs/ade_316
  --config.data.root=/data/ADEChallengeData2016
"""
from configs import base

get_config = base.table_1_config(__file__)
