r"""Validates a prepared dataset against a split and prints a summary.

  python -m tools.check_data --config configs/voc_92.py --config.data.root=/data/VOC2012 [--max 0]
  python -m tools.check_data --config configs/folder.py --config.data.root=/data/mine

Reads every listed image and label (or the first --max of each list), reports every bad file
(missing, unreadable, label size or values wrong, RGB-coloured label) and the most common
preparation mistake that passes per-file checks: masks scaled to 0/255 (binary) instead of
class indices. Exit status 1 when anything is wrong.
"""
from typing import Dict, List

from absl import app
from absl import flags
import numpy as np
from ml_collections import config_flags

from hvl_jax.data import datasets

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_integer('max', 0, 'Check at most this many entries per list (0 = all).')
  flags.mark_flags_as_required(['config'])


def check_sources(sources: Dict[str, object], num_classes: int, limit: int = 0):
  """Returns (summary lines, problems) for the labeled, unlabeled and val sources."""
  lines: List[str] = []
  problems: List[str] = []
  hist = np.zeros(num_classes + 1, np.int64)      # last bin: ignore
  for name in ('labeled', 'unlabeled', 'val'):
    src = sources[name]
    n = len(src) if not limit else min(limit, len(src))
    sizes, labelled_values = [], set()
    for i in range(n):
      try:
        record = src[i]
      except datasets.DataError as e:
        problems.append(str(e))
        continue
      sizes.append(record['image'].shape[:2])
      if 'label' in record:
        values, counts = np.unique(record['label'], return_counts=True)
        labelled_values.update(values.tolist())
        if name == 'labeled':
          for v, c in zip(values, counts):
            hist[min(int(v), num_classes)] += c
    if sizes:
      hs, ws = zip(*sizes)
      lines.append(f'{name:9s} {n:6d} of {len(src)} entries read, images {min(ws)}-{max(ws)} x '
                   f'{min(hs)}-{max(hs)} px')
    else:
      lines.append(f'{name:9s} {n:6d} of {len(src)} entries read, none readable')
    if num_classes > 2 and labelled_values and labelled_values <= {0, 255}:
      problems.append(
          f'{name}: every label holds only the values 0 and 255 - the masks look binary or '
          '0/255-scaled; expected class indices 0..K-1 (255 = ignore)')
  total = max(hist.sum(), 1)
  seen = [f'{k}:{100 * hist[k] / total:.1f}%' for k in range(num_classes) if hist[k]]
  lines.append(f'labeled pixels per class: {" ".join(seen)}; ignore {100 * hist[-1] / total:.1f}%')
  missing = [k for k in range(num_classes) if not hist[k]]
  if missing:
    lines.append(f'classes absent from the labeled split: {missing}')
  return lines, problems


def main(argv):
  del argv
  try:
    config = datasets.resolved(FLAGS.config)
    sources = datasets.make_sources(config)
  except datasets.DataError as e:       # the layout itself (a folder dataset's files, a split list)
    raise SystemExit(f'error: {e}') from None
  lines, problems = check_sources(sources, config.data.num_classes, FLAGS.max)
  print(f'dataset {config.data.name}, split {config.data.split or "-"}, root {config.data.root}, '
        f'{config.data.num_classes} classes')
  print('\n'.join(lines))
  if problems:
    print(f'{len(problems)} problem(s):')
    print('\n'.join(f'  {p}' for p in problems))
    raise SystemExit(1)
  print('OK')


if __name__ == '__main__':
  define_flags()
  app.run(main)
