r"""Runs one config with several seeds and reports the median and spread of the final mIoU.

Results vary by several tenths of mIoU between runs, so compare medians.

  python -m tools.seeds --config configs/voc_92.py --workdir runs/voc_92_seeds --seeds 0,1,2 \
      --config.data.root=/data/VOC2012                      # sequentially, in this process
  python -m tools.seeds ... --print_commands              # one command per seed, for separate jobs
  python -m tools.seeds ... --collect                     # only summarise finished runs
  python -m tools.seeds ... --collect --result eval_open_vocabulary.json --key miou_unseen

Each seed trains in `<workdir>/seed_<s>` (resuming if interrupted); the summary of `--key` in each
seed's `--result` file (default: the final mIoU) goes to `<workdir>/seeds_summary.json`
(`seeds_summary_<result>_<key>.json` for other results or keys).
"""
import json
import os
import shlex
from typing import Dict, List

# As hvl_jax.main, before jax is imported: no XLA "Very slow compile?" lines that read like errors.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TRANSFORMERS_NO_ADVISORY_WARNINGS', '1')

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
from ml_collections import config_flags

from hvl_jax.common import compilation_cache
from hvl_jax.training import trainer

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Parent directory of the per-seed workdirs.')
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds to run.')
  flags.DEFINE_bool('print_commands', False, 'Print one training command per seed and exit.')
  flags.DEFINE_bool('collect', False, 'Only summarise the runs that finished.')
  flags.DEFINE_string('result', 'eval_final.json', "Each seed's result file that is summarised.")
  flags.DEFINE_string('key', 'miou',
                      'The entry of the result file that is summarised (a fraction).')
  flags.mark_flags_as_required(['config', 'workdir'])


def seed_workdir(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f'seed_{seed}')


def summarize(results: Dict[int, float]) -> Dict[str, float]:
  """Median, mean, std, min and max of {seed: miou}."""
  values = np.asarray(list(results.values()), np.float64)
  return dict(seeds=sorted(results), per_seed={str(k): v for k, v in sorted(results.items())},
              median=float(np.median(values)), mean=float(values.mean()),
              std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
              min=float(values.min()), max=float(values.max()))


def collect(workdir: str, seeds: List[int], result: str = 'eval_final.json',
            key: str = 'miou') -> Dict[int, float]:
  """{seed: value of `key` in the seed's `result` file}, for the seeds whose file exists."""
  found = {}
  for s in seeds:
    path = os.path.join(seed_workdir(workdir, s), result)
    if os.path.exists(path):
      with open(path) as f:
        values = json.load(f)
      if values.get(key) is None:
        raise SystemExit(f'{path}: no value for {key!r}')
      found[s] = values[key]
  return found


def summary_path(workdir: str, result: str, key: str) -> str:
  if (result, key) == ('eval_final.json', 'miou'):
    return os.path.join(workdir, 'seeds_summary.json')
  return os.path.join(workdir, f'seeds_summary_{os.path.splitext(result)[0]}_{key}.json')


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds]
  workdir = FLAGS.workdir
  compilation_cache.enable()
  config = FLAGS.config
  if FLAGS.print_commands:
    config_file = config_flags.get_config_filename(flags.FLAGS['config'])
    overrides = [
        f'--config.{k}={v}'
        for k, v in config_flags.get_override_values(flags.FLAGS['config']).items()
        if k != 'seed'
    ]
    for s in seeds:
      cmd = [
          'python', '-m', 'hvl_jax.main', '--config', config_file, '--workdir',
          seed_workdir(workdir, s), f'--config.seed={s}'
      ] + overrides
      print(' '.join(shlex.quote(c) for c in cmd))
    return
  if not FLAGS.collect:
    for s in seeds:
      if s in collect(workdir, [s]):
        print(f'seed {s}: already finished', flush=True)
        continue
      with config.unlocked():
        config.seed = s
      os.makedirs(seed_workdir(workdir, s), exist_ok=True)
      print(f'=== seed {s} ===', flush=True)
      trainer.train_and_evaluate(config, seed_workdir(workdir, s))
  results = collect(workdir, seeds, FLAGS.result, FLAGS.key)
  if not results:
    raise SystemExit(f'{workdir}: no finished seed run ({FLAGS.result}) among seeds {seeds}')
  summary = summarize(results)
  os.makedirs(workdir, exist_ok=True)
  with open(summary_path(workdir, FLAGS.result, FLAGS.key), 'w') as f:
    json.dump(summary, f, indent=2)
  per_seed = ', '.join(f'{k}: {100 * v:.2f}' for k, v in summary['per_seed'].items())
  print(
      f'{FLAGS.key} of {FLAGS.result} over {len(results)} seed(s) [{per_seed}]: median '
      f'{100 * summary["median"]:.2f}, '
      f'mean {100 * summary["mean"]:.2f} ± {100 * summary["std"]:.2f} (std), '
      f'range {100 * summary["min"]:.2f}-{100 * summary["max"]:.2f}', flush=True)
  missing = sorted(set(seeds) - set(results))
  if missing:
    print(f'not finished: seeds {missing}', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
