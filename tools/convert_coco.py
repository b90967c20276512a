r"""COCO instance annotations -> 81-class index PNG masks (0 background, 1..80 contiguous thing
ids).

  python -m tools.convert_coco --root /data/coco [--splits train2017,val2017]

Reads `<root>/annotations/instances_<split>.json`, writes `<root>/masks/<image id>.png` (the
layout of the shipped split lists). Category ids (1..90 with gaps) map to 1..80 in sorted order;
larger instances are drawn first so small ones stay visible; crowd regions become 255 (ignore).
Existing masks are kept unless --overwrite.
"""
import argparse
import os

import numpy as np
from PIL import Image


def category_mapping(coco) -> dict:
  """COCO category id -> contiguous class id 1..80."""
  return {cat_id: i + 1 for i, cat_id in enumerate(sorted(coco.getCatIds()))}


def image_mask(coco, image_id: int, mapping: dict) -> np.ndarray:
  """(H, W) uint8 index mask of one image."""
  info = coco.loadImgs(image_id)[0]
  mask = np.zeros((info['height'], info['width']), np.uint8)
  anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
  for ann in sorted(anns, key=lambda a: -a['area']):
    m = coco.annToMask(ann).astype(bool)
    mask[m] = 255 if ann.get('iscrowd', 0) else mapping[ann['category_id']]
  return mask


def convert(root: str, split: str, overwrite: bool = False) -> int:
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  path = os.path.join(root, 'annotations', f'instances_{split}.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path}: COCO annotation file not found')
  coco = COCO(path)
  mapping = category_mapping(coco)
  out_dir = os.path.join(root, 'masks')
  os.makedirs(out_dir, exist_ok=True)
  written = 0
  ids = sorted(coco.getImgIds())
  for n, image_id in enumerate(ids, 1):
    out = os.path.join(out_dir, f'{image_id:012d}.png')
    if overwrite or not os.path.exists(out):
      tmp = out + '.tmp.png'
      Image.fromarray(image_mask(coco, image_id, mapping)).save(tmp)
      os.replace(tmp, out)      # never leaves a half-written mask behind
      written += 1
    if n % 1000 == 0 or n == len(ids):
      print(f'{split}: {n}/{len(ids)} images', flush=True)
  return written


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--root', required=True)
  parser.add_argument('--splits', default='train2017,val2017')
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args()
  for split in args.splits.split(','):
    print(f'{split}: wrote {convert(args.root, split, args.overwrite)} masks')


if __name__ == '__main__':
  main()
