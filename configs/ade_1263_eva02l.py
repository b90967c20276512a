r"""ADE20K, 1263 labeled images (split 1_16).

EVA02-CLIP-L/14 for both encoders (the paper's headline configuration); paper mIoU
(Table 1, HVL with EVA02-L, as we read the table): 49.8.

  python -m hvl_jax.main --config configs/ade_1263_eva02l.py --workdir runs/ade_1263_eva02l \
      --config.data.root=/data/ADEChallengeData2016
"""
from configs import base


def get_config():
  return base.dataset_config('ade', '1_16', backbone='eva02_clip_l14')
