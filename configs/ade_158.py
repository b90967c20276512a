r"""ADE20K, 158 labeled images (split 1_128).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 34.0.

  python -m hvl_jax.main --config configs/ade_158.py --workdir runs/ade_158 \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_128')
