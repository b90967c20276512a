r"""COCO 2017 (81 classes), 3697 labeled images (split 1_32).

EVA02-CLIP-L/14 for both encoders (the paper's headline configuration); paper mIoU
(Table 1, HVL with EVA02-L, as we read the table): 67.4.

  python -m hvl_jax.main --config configs/coco_3697_eva02l.py --workdir runs/coco_3697_eva02l \
      --config.data.root=/data/coco
"""
from configs import base


def get_config():
  return base.dataset_config('coco', '1_32', backbone='eva02_clip_l14')
