r"""ADE20K, 316 labeled images (split 1_64).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 38.8.

  python -m hvl_jax.main --config configs/ade_316.py --workdir runs/ade_316 \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_64')
