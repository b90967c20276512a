r"""The small world's Table 1: val mIoU against the number of labeled scenes, semi-supervised
against supervised over seeds, and the bound with every scene labeled.

  python -m tools.label_curve --workdir runs/label_curve                  # runs what is missing,
  then plots
  python -m tools.label_curve --workdir runs/label_curve --collect        # table and plot of
  finished runs
  python -m tools.label_curve --workdir runs/label_curve --print_commands # one command per run

Each point trains `--semi` (default configs/demo.py) or `--supervised` (configs/demo_supervised.py)
with `data.synthetic_labeled` set to the count, in `<workdir>/<semi|supervised>_<count>/seed_<s>`
(tools.seeds' layout; an interrupted run resumes). The bound trains `--supervised` with every
scene of the unlabeled pool labeled (`data.synthetic_labeled = data.synthetic_unlabeled`) in
`<workdir>/bound/seed_<s>`. Overrides go to either config: `--semi.train.steps=1000`.

Writes `<workdir>/label_curve.json` (per seed, median, the semi-supervised gain per seed and its
median, the bound, each run's wall time) and `<workdir>/label_curve.png` (seeds as dots, medians
as lines, the bound as a dashed line).
"""
import json
import os
import shlex
import time
from typing import Dict, List

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TRANSFORMERS_NO_ADVISORY_WARNINGS', '1')

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import matplotlib
import numpy as np
from ml_collections import config_flags

from hvl_jax.common import compilation_cache
from hvl_jax.training import trainer
from tools import seeds as seeds_lib

matplotlib.use('Agg')     # files only, no display
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
METHODS = ('semi', 'supervised')


def define_flags():
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  config_flags.DEFINE_config_file('semi', 'configs/demo.py', 'The semi-supervised config.',
                                  lock_config=True)
  config_flags.DEFINE_config_file('supervised', 'configs/demo_supervised.py',
                                  'The supervised config.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Parent directory of the runs.')
  flags.DEFINE_list('counts', ['4', '8', '16', '64'], 'Labeled scenes at each point of the curve.')
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of each point.')
  flags.DEFINE_bool('bound', True,
                    'Also train the bound: every scene of the pool labeled, supervised.')
  flags.DEFINE_bool('collect', False, 'Only summarise and plot the runs that finished.')
  flags.DEFINE_bool('print_commands', False, 'Print one training command per run and exit.')
  flags.mark_flags_as_required(['workdir'])


def run_name(method: str, count: int) -> str:
  return 'bound' if method == 'bound' else f'{method}_{count}'


def runs(counts: List[int], bound_count: int, with_bound: bool):
  """[(method, labeled scenes, config flag)] of the curve, the bound last."""
  out = [(m, n, m) for n in counts for m in METHODS]
  return out + ([('bound', bound_count, 'supervised')] if with_bound else [])


def curve(workdir: str, points, seeds: List[int]) -> Dict:
  """The curve's record from the finished runs' eval_final.json (mIoU as fractions)."""
  record = dict(seeds=seeds, counts=sorted({n for m, n, _ in points if m != 'bound'}))
  for method, count, _ in points:
    found = seeds_lib.collect(os.path.join(workdir, run_name(method, count)), seeds)
    if found:
      record.setdefault(method, {})[str(count)] = seeds_lib.summarize(found)
  for count in record['counts']:
    semi, sup = (record.get(m, {}).get(str(count), {}).get('per_seed', {}) for m in METHODS)
    both = sorted(set(semi) & set(sup), key=int)
    if both:
      gains = {s: semi[s] - sup[s] for s in both}
      record.setdefault('gain',
                        {})[str(count)] = dict(per_seed=gains,
                                               median=float(np.median(list(gains.values()))),
                                               min=min(gains.values()))
  timings = os.path.join(workdir, 'timings.json')
  if os.path.exists(timings):
    with open(timings) as f:
      record['run_seconds'] = json.load(f)
    record['total_minutes'] = sum(record['run_seconds'].values()) / 60
  return record


def table(record: Dict) -> str:
  """The curve as a markdown table (mIoU in points: median (per seed))."""
  pct = lambda s: f'{100 * s["median"]:.1f} (' + ', '.join(f'{100 * v:.1f}'
                                                           for v in s['per_seed'].values()) + ')'
  lines = ['| labeled scenes | semi-supervised | supervised | gain |', '|---|---|---|---|']
  for n in record['counts']:
    cells = [pct(record[m][str(n)]) if str(n) in record.get(m, {}) else '-' for m in METHODS]
    g = record.get('gain', {}).get(str(n))
    gain = (f'{100 * g["median"]:+.1f} (' +
            ', '.join(f'{100 * v:+.1f}' for v in g['per_seed'].values()) + ')' if g else '-')
    lines.append(f'| {n} | {cells[0]} | {cells[1]} | {gain} |')
  for count, s in record.get('bound', {}).items():
    lines.append(f'| {count} (bound, all labeled) | - | {pct(s)} | - |')
  return '\n'.join(lines)


def plot(record: Dict, path: str):
  """mIoU against labeled scenes: seeds as dots, medians as lines, the bound dashed."""
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  for method, colour in zip(METHODS, ('tab:blue', 'tab:orange')):
    points = {int(n): s for n, s in record.get(method, {}).items()}
    if not points:
      continue
    counts = sorted(points)
    for n in counts:
      values = 100 * np.asarray(list(points[n]['per_seed'].values()))
      ax.scatter([n] * len(values), values, color=colour, s=14, alpha=0.6)
    ax.plot(counts, [100 * points[n]['median'] for n in counts], color=colour, marker='o',
            label=f'{method} (median)')
  for count, s in record.get('bound', {}).items():
    ax.axhline(100 * s['median'], color='tab:green', linestyle='--',
               label=f'all {count} labeled (median)')
  ax.set_xscale('log', base=2)
  ax.set_xticks(record['counts'], [str(n) for n in record['counts']])
  ax.set_xlabel('labeled scenes')
  ax.set_ylabel('val mIoU')
  ax.set_title('The small world: semi-supervised vs supervised')
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right', fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv):
  del argv
  workdir = FLAGS.workdir
  counts, seeds = [int(n) for n in FLAGS.counts], [int(s) for s in FLAGS.seeds]
  configs = {'semi': FLAGS.semi, 'supervised': FLAGS.supervised}
  points = runs(counts, configs['supervised'].data.synthetic_unlabeled, FLAGS.bound)
  if FLAGS.print_commands:
    for method, count, which in points:
      config_file = config_flags.get_config_filename(flags.FLAGS[which])
      overrides = [
          f'--config.{k}={v}'
          for k, v in config_flags.get_override_values(flags.FLAGS[which]).items()
          if k not in ('seed', 'data.synthetic_labeled')
      ]
      for s in seeds:
        cmd = ['python', '-m', 'hvl_jax.main', '--config', config_file, '--workdir',
               seeds_lib.seed_workdir(os.path.join(workdir, run_name(method, count)), s),
               f'--config.seed={s}', f'--config.data.synthetic_labeled={count}'] + overrides
        print(' '.join(shlex.quote(c) for c in cmd))
    return
  os.makedirs(workdir, exist_ok=True)
  if not FLAGS.collect:
    compilation_cache.enable()
    timings_path = os.path.join(workdir, 'timings.json')
    timings = json.load(open(timings_path)) if os.path.exists(timings_path) else {}
    todo = [(m, n, w, s) for m, n, w in points for s in seeds
            if s not in seeds_lib.collect(os.path.join(workdir, run_name(m, n)), [s])]
    print(f'{len(todo)} of {len(points) * len(seeds)} runs to train', flush=True)
    for i, (method, count, which, s) in enumerate(todo):
      config = configs[which].copy_and_resolve_references()
      config.seed = s
      config.data.synthetic_labeled = count
      run_dir = seeds_lib.seed_workdir(os.path.join(workdir, run_name(method, count)), s)
      print(f'=== [{i + 1}/{len(todo)}] {method}, {count} labeled scenes, seed {s}: {run_dir} ===',
            flush=True)
      os.makedirs(run_dir, exist_ok=True)
      t0 = time.time()
      trainer.train_and_evaluate(config, run_dir)
      timings[f'{run_name(method, count)}/seed_{s}'] = time.time() - t0
      with open(timings_path, 'w') as f:
        json.dump(timings, f, indent=2)
  record = curve(workdir, points, seeds)
  if not any(m in record for m in METHODS + ('bound',)):
    raise SystemExit(f'{workdir}: no finished run of the curve')
  with open(os.path.join(workdir, 'label_curve.json'), 'w') as f:
    json.dump(record, f, indent=2)
  plot(record, os.path.join(workdir, 'label_curve.png'))
  print(table(record), flush=True)
  print(f'wrote {os.path.join(workdir, "label_curve.json")} and label_curve.png', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
