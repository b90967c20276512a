r"""Draws a labeled/unlabeled split of a given size from a full training list, or the labeled
images of a folder dataset.

  python -m tools.make_split --list hvl_jax/data/splits/pascal/train_aug.txt --labeled 92 \
      --seed 0 --out my_splits/pascal/92 [--root /data/VOC2012 --num_classes 21]
  python -m tools.make_split --folder /data/mine --labeled 92 [--seed 0]

With --root (and always with --folder), labels are read and the draw is class-balanced where
possible: the rarest classes first, one image holding each class, then random images up to the
size. A list gives labeled.txt and unlabeled.txt (the rest) in --out; a folder gives
<folder>/splits/labeled.txt, drawn from its training images that have a label (the others are
unlabeled in training). Refuses lists that overlap and existing output files unless --overwrite.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

from hvl_jax.common.errors import DataError
from hvl_jax.data import datasets
from hvl_jax.data import files
from hvl_jax.data import folder

Entry = Tuple[str, Optional[str]]


def draw_split(entries: Sequence[Entry], n: int, seed: int, classes_per_entry=None):
  """(labeled, unlabeled) lists; classes_per_entry: list of sets of classes (None = plain
  random)."""
  if not 0 < n < len(entries):
    raise ValueError(
        f'labeled size {n} must be in [1, {len(entries) - 1}] for a list of {len(entries)}')
  rng = np.random.default_rng(seed)
  chosen: List[int] = []
  if classes_per_entry is not None:
    all_classes = sorted(set().union(*classes_per_entry))
    holders = {c: [i for i, cs in enumerate(classes_per_entry) if c in cs] for c in all_classes}
    for c in sorted(all_classes, key=lambda c: (len(holders[c]), c)):
      if len(chosen) == n:
        break
      if any(c in classes_per_entry[i] for i in chosen):
        continue
      chosen.append(int(rng.choice(holders[c])))
  rest = [i for i in rng.permutation(len(entries)) if i not in set(chosen)]
  chosen += rest[:n - len(chosen)]
  taken = set(chosen)
  labeled = [entries[i] for i in sorted(chosen)]
  unlabeled = [entries[i] for i in range(len(entries)) if i not in taken]
  return labeled, unlabeled


def check_disjoint(labeled: Sequence[Entry], unlabeled: Sequence[Entry]):
  overlap = {e[0] for e in labeled} & {e[0] for e in unlabeled}
  if overlap:
    raise ValueError(
        f'labeled and unlabeled lists overlap in {len(overlap)} image(s), e.g. '
        f'{sorted(overlap)[:3]}'
    )


def write_split(out_dir: str, labeled, unlabeled, overwrite: bool = False):
  check_disjoint(labeled, unlabeled)
  os.makedirs(out_dir, exist_ok=True)
  for name, entries in (('labeled.txt', labeled), ('unlabeled.txt', unlabeled)):
    path = os.path.join(out_dir, name)
    if os.path.exists(path) and not overwrite:
      raise FileExistsError(f'{path}: exists (use --overwrite)')
    with open(path, 'w') as f:
      f.writelines(' '.join(x for x in e if x) + '\n' for e in entries)


def label_classes(source) -> List[set]:
  """The set of classes in each label of a source."""
  return [
      set(np.unique(source[i]['label']).tolist()) - {datasets.IGNORE} for i in range(len(source))
  ]


def folder_split(root: str, n: int, seed: int, overwrite: bool = False) -> str:
  """Writes <root>/splits/labeled.txt: n of the folder's labeled training images, class-balanced."""
  labeled, _ = folder.split_pairs(root, 'train')
  source = files.FileSource(root, labeled, len(folder.read_classes(root)))
  chosen, _ = draw_split(labeled, n, seed, label_classes(source))
  path = os.path.join(root, folder.LABELED_LIST)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f'{path}: exists (use --overwrite)')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.writelines(image[len('images/train/'):] + '\n' for image, _ in chosen)
  print(f'{path}: {len(chosen)} of the {len(labeled)} labeled training images (seed {seed})')
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--list', default='', help='full training list (image [label] per line)')
  parser.add_argument('--folder', default='',
                      help='a folder dataset (data.name=folder): writes its splits/labeled.txt')
  parser.add_argument('--labeled', type=int, required=True)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default='')
  parser.add_argument('--root', default='',
                      help='dataset root: read labels for a class-balanced draw')
  parser.add_argument('--num_classes', type=int, default=0)
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args()
  if args.folder:
    try:
      folder_split(args.folder, args.labeled, args.seed, args.overwrite)
    except (DataError, ValueError, FileExistsError) as e:
      sys.exit(f'error: {e}')
    return
  if not (args.list and args.out):
    parser.error('give --folder, or --list and --out')
  entries = datasets.read_split_list(args.list, need_labels=False)
  classes = None
  if args.root:
    if not args.num_classes:
      parser.error('--root needs --num_classes')
    classes = label_classes(files.FileSource(args.root, entries, args.num_classes))
  labeled, unlabeled = draw_split(entries, args.labeled, args.seed, classes)
  write_split(args.out, labeled, unlabeled, args.overwrite)
  print(f'{args.out}: {len(labeled)} labeled, {len(unlabeled)} unlabeled (seed {args.seed})')


if __name__ == '__main__':
  main()
