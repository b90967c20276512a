r"""Pascal VOC 2012 + SBD, 732 labeled images (split 732).

EVA02-CLIP-L/14 for both encoders (the paper's headline configuration); paper mIoU
(Table 1, HVL with EVA02-L, as we read the table): 91.5.

  python -m hvl_jax.main --config configs/voc_732_eva02l.py --workdir runs/voc_732_eva02l \
      --config.data.root=/data/VOC2012
"""
from configs import base


def get_config():
  return base.dataset_config('voc', '732', backbone='eva02_clip_l14')
