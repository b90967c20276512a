r"""ADE20K, 632 labeled images (split 1_32).

EVA02-CLIP-L/14 for both encoders (the paper's headline configuration); paper mIoU
(Table 1, HVL with EVA02-L, as we read the table): 48.2.

  python -m hvl_jax.main --config configs/ade_632_eva02l.py --workdir runs/ade_632_eva02l \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_32', backbone='eva02_clip_l14')
