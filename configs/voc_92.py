r"""Pascal VOC 2012 + SBD, 92 labeled images (split 92).

Paper mIoU (Table 1, HVL with CLIP ViT-B/16, as we read the table): 87.1.

  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 \
      --config.data.root=/data/VOC2012
"""
from configs import base


def get_config():
  return base.dataset_config('voc', '92')
