r"""Pascal VOC 2012 + SBD, 732 labeled images (split 732).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 89.2.

  python -m hvl_jax.main --config configs/voc_732.py --workdir runs/voc_732 \
      --config.data.root=/data/VOC2012
"""
from configs import base


def get_config():
  return base.dataset_config('voc', '732')
