r"""Draws a labeled/unlabeled split of a given size from a full training list.

  python -m tools.make_split --list hvl_jax/data/splits/pascal/train_aug.txt --labeled 92 \
      --seed 0 --out my_splits/pascal/92 [--root /data/VOC2012 --num_classes 21]

With --root, labels are read and the draw is class-balanced where possible: the rarest classes
first, one image holding each class, then random images up to the size. Writes labeled.txt and
unlabeled.txt (the rest); refuses lists that overlap and existing output files unless --overwrite.
"""
import argparse
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from hvl_jax.data import datasets

Entry = Tuple[str, Optional[str]]


def draw_split(entries: Sequence[Entry], n: int, seed: int, classes_per_entry=None):
  """(labeled, unlabeled) lists; classes_per_entry: list of sets of classes (None = plain random)."""
  if not 0 < n < len(entries):
    raise ValueError(f'labeled size {n} must be in [1, {len(entries) - 1}] for a list of {len(entries)}')
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
    raise ValueError(f'labeled and unlabeled lists overlap in {len(overlap)} image(s), e.g. {sorted(overlap)[:3]}')


def write_split(out_dir: str, labeled, unlabeled, overwrite: bool = False):
  check_disjoint(labeled, unlabeled)
  os.makedirs(out_dir, exist_ok=True)
  for name, entries in (('labeled.txt', labeled), ('unlabeled.txt', unlabeled)):
    path = os.path.join(out_dir, name)
    if os.path.exists(path) and not overwrite:
      raise FileExistsError(f'{path}: exists (use --overwrite)')
    with open(path, 'w') as f:
      f.writelines(' '.join(x for x in e if x) + '\n' for e in entries)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--list', required=True, help='full training list (image [label] per line)')
  parser.add_argument('--labeled', type=int, required=True)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', required=True)
  parser.add_argument('--root', default='', help='dataset root: read labels for a class-balanced draw')
  parser.add_argument('--num_classes', type=int, default=0)
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args()
  entries = datasets.read_split_list(args.list, need_labels=False)
  classes = None
  if args.root:
    if not args.num_classes:
      parser.error('--root needs --num_classes')
    src = datasets.FileSource(args.root, entries, args.num_classes)
    classes = [set(np.unique(src[i]['label']).tolist()) - {datasets.IGNORE} for i in range(len(src))]
  labeled, unlabeled = draw_split(entries, args.labeled, args.seed, classes)
  write_split(args.out, labeled, unlabeled, args.overwrite)
  print(f'{args.out}: {len(labeled)} labeled, {len(unlabeled)} unlabeled (seed {args.seed})')


if __name__ == '__main__':
  main()
