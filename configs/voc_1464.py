r"""Pascal VOC 2012 + SBD, 1464 labeled images (split 1464).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 89.9.

  python -m hvl_jax.main --config configs/voc_1464.py --workdir runs/voc_1464 \
      --config.data.root=/data/VOC2012
"""
from configs import base


def get_config():
  return base.dataset_config('voc', '1464')
