r"""Pascal VOC 2012 + SBD, 366 labeled images (split 366).

EVA02-CLIP-L/14 for both encoders (the paper's headline configuration); paper mIoU
(Table 1, HVL with EVA02-L, as we read the table): 90.9.

  python -m hvl_jax.main --config configs/voc_366_eva02l.py --workdir runs/voc_366_eva02l \
      --config.data.root=/data/VOC2012
"""
from configs import base


def get_config():
  return base.dataset_config('voc', '366', backbone='eva02_clip_l14')
