r"""Cityscapes `*_gtFine_labelIds.png` -> `*_gtFine_labelTrainIds.png` (19 classes, 255 ignore).

  python -m tools.convert_cityscapes --root /data/cityscapes
"""
import argparse
import glob
import os

import numpy as np
from PIL import Image

# labelId -> trainId of the 19 evaluated classes (cityscapesScripts' labels.py); the rest -> 255.
LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18
}


def lookup_table() -> np.ndarray:
  table = np.full(256, 255, np.uint8)
  for label_id, train_id in LABEL_TO_TRAIN.items():
    table[label_id] = train_id
  return table


def convert_file(path: str, table: np.ndarray) -> str:
  out = path.replace('_labelIds.png', '_labelTrainIds.png')
  label = np.asarray(Image.open(path))
  if label.ndim != 2:
    raise ValueError(f'{path}: expected a single-channel labelIds PNG, got shape {label.shape}')
  tmp = out + '.tmp.png'
  Image.fromarray(table[label]).save(tmp)
  os.replace(tmp, out)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--root', required=True)
  args = parser.parse_args()
  files = sorted(glob.glob(os.path.join(args.root, 'gtFine', '*', '*', '*_gtFine_labelIds.png')))
  if not files:
    raise SystemExit(f'{args.root}/gtFine/*/*/*_gtFine_labelIds.png: no label files found')
  table = lookup_table()
  for n, path in enumerate(files, 1):
    convert_file(path, table)
    if n % 500 == 0 or n == len(files):
      print(f'{n}/{len(files)}', flush=True)


if __name__ == '__main__':
  main()
