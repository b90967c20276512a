r"""ADE20K, 632 labeled images (split 1_32).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 39.8.

  python -m hvl_jax.main --config configs/ade_632.py --workdir runs/ade_632 \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_32')
