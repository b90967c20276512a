r"""ADE20K, 1263 labeled images (split 1_16).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 41.6.

  python -m hvl_jax.main --config configs/ade_1263.py --workdir runs/ade_1263 \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_16')
