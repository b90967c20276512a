r"""Converts RGB colour masks (CVAT, Label Studio, LabelMe exports) into index PNGs.

  python -m tools.colour_masks --colours colours.txt --input exported_masks/ \
      --output /data/mine/labels/train/ [--classes /data/mine/classes.txt]

colours.txt has one `R G B name` line per class, in the class order of classes.txt (line 1 is
label 0); a line named `ignore` maps its colour to 255 (ignored in training and evaluation) and is
no class. With --classes the class lines' names must be classes.txt's, in its order.

Every mask under --input (sub-folders kept) becomes <output>/<same path>.png. A pixel whose colour
is in no line is an error: one line per (file, colour) with its pixel count, and nothing is
written. The masks are converted into a folder beside --output and moved into it only when every
one converted, so --output never holds part of a conversion.
"""
import argparse
import os
import shutil
import sys
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.common.errors import DataError
from hvl_jax.data import files
from hvl_jax.data import folder

IGNORE_NAME = 'ignore'


def read_colours(path: str) -> Tuple[Dict[Tuple[int, int, int], int], List[str]]:
  """({(r, g, b): label}, class names in order) of a colour table (see the module docstring)."""
  table: Dict[Tuple[int, int, int], int] = {}
  names: List[str] = []
  first: Dict[Tuple[int, int, int], int] = {}
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      parts = line.split(maxsplit=3)
      if not parts:
        continue
      try:
        rgb = tuple(int(v) for v in parts[:3])
      except ValueError:
        rgb = ()
      if len(parts) < 4 or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise DataError(
            f'{path}:{number}: expected "R G B name" with R, G, B in 0..255, got {line.strip()!r}')
      if rgb in first:
        raise DataError(f'{path}:{number}: colour {rgb} is also on line {first[rgb]}')
      first[rgb] = number
      name = parts[3].strip()
      if folder.normalised(name) == IGNORE_NAME:
        table[rgb] = IGNORE_INDEX
      else:
        table[rgb] = len(names)
        names.append(name)
  if not names:
    raise DataError(f'{path}: no class colours')
  return table, names


def check_names(names: List[str], classes_path: str, colours_path: str):
  """The table's class names are those of classes.txt, in its order."""
  classes = folder.read_class_file(classes_path)
  for k, (got, want) in enumerate(zip(names, classes)):
    if folder.normalised(got) != folder.normalised(want):
      raise DataError(
          f'{colours_path}: class {k} is {got!r} but {classes_path} line {k + 1} is {want!r}; '
          'write the colours in the class order of classes.txt')
  if len(names) != len(classes):
    raise DataError(
        f'{colours_path}: {len(names)} class colours for the {len(classes)} classes of '
        f'{classes_path}'
    )


def to_index(mask: np.ndarray, table: Dict[Tuple[int, int, int], int]):
  """(H, W, 3) uint8 colours -> ((H, W) uint8 labels, {unknown (r, g, b): pixel count})."""
  codes = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) | mask[...,
                                                                                              2]
  keys = np.asarray(sorted((r << 16) | (g << 8) | b for r, g, b in table), np.int64)
  values = np.asarray([table[(k >> 16, (k >> 8) & 255, k & 255)] for k in keys.tolist()], np.uint8)
  at = np.minimum(np.searchsorted(keys, codes), len(keys) - 1)
  known = keys[at] == codes
  unknown, counts = np.unique(codes[~known], return_counts=True)
  missing = {
      (int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255): int(n) for c, n in zip(unknown, counts)
  }
  return values[at], missing


def read_mask(path: str) -> np.ndarray:
  with files.open_file(path, 'mask') as im:
    return np.asarray(im.convert('RGB'))


def convert(input_dir: str, output_dir: str, table) -> Tuple[int, List[str]]:
  """Converts every mask of input_dir into output_dir (see the module docstring); returns
  (masks written, problems), writing nothing when there is a problem."""
  rels = folder.walk(input_dir)
  if not rels:
    raise DataError(f'{input_dir}: no masks')
  staging = f'{os.path.abspath(output_dir).rstrip(os.sep)}.partial-{os.getpid()}'
  problems: List[str] = []
  try:
    for rel in rels:
      path = os.path.join(input_dir, rel)
      if os.path.splitext(rel)[1].lower() not in files.IMAGE_EXTENSIONS:
        problems.append(f'{path}: not an image file')
        continue
      index, missing = to_index(read_mask(path), table)
      problems += [f'{path}: colour {rgb} is in no line of the colour table ({n} pixels)'
                   for rgb, n in sorted(missing.items(), key=lambda kv: -kv[1])]
      if not problems:
        target = os.path.join(staging, os.path.splitext(rel)[0] + '.png')
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Image.fromarray(index, mode='L').save(target)
    if problems:
      return 0, problems
    for rel in folder.walk(staging):
      target = os.path.join(output_dir, rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.replace(os.path.join(staging, rel), target)
    return len(rels), []
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--colours', required=True,
                      help='the colour table: one "R G B name" line per class')
  parser.add_argument('--input', required=True, help='folder of RGB colour masks')
  parser.add_argument('--output', required=True,
                      help='folder for the index PNGs (e.g. <root>/labels/train)')
  parser.add_argument('--classes', default='',
                      help="the dataset's classes.txt, to check the table's order")
  args = parser.parse_args(argv)
  try:
    table, names = read_colours(args.colours)
    if args.classes:
      check_names(names, args.classes, args.colours)
    written, problems = convert(args.input, args.output, table)
  except (DataError, OSError) as e:
    sys.exit(f'error: {e}')
  if problems:
    print('\n'.join(problems), file=sys.stderr)
    sys.exit(f'error: {len(problems)} problem(s); nothing written to {args.output}')
  print(f'{args.output}: {written} index PNGs, {len(names)} classes')


if __name__ == '__main__':
  main()
