r"""ADE20K, 2526 labeled images (split 1_8).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 39.4.

  python -m hvl_jax.main --config configs/ade_2526.py --workdir runs/ade_2526 \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_8')
