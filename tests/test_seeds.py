"""Multi-seed summary: median and spread of the final mIoU, or of another entry of another
result."""
import json
import os
import subprocess
import sys

import numpy as np

from tools import seeds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_collect_and_summarize(tmp_path):
  values = {0: 0.71, 1: 0.74, 3: 0.69}
  for s, v in values.items():
    os.makedirs(seeds.seed_workdir(str(tmp_path), s))
    with open(os.path.join(seeds.seed_workdir(str(tmp_path), s), 'eval_final.json'), 'w') as f:
      json.dump({'miou': v}, f)
  found = seeds.collect(str(tmp_path), [0, 1, 2, 3])
  assert found == values
  summary = seeds.summarize(found)
  arr = np.asarray(list(values.values()))
  np.testing.assert_allclose(summary['median'], np.median(arr))
  np.testing.assert_allclose(summary['std'], arr.std(ddof=1))
  assert (summary['min'], summary['max']) == (0.69, 0.74)
  out = subprocess.run([
      sys.executable, '-m', 'tools.seeds', '--config', 'configs/demo.py', '--workdir',
      str(tmp_path), '--seeds', '0,1,2,3', '--collect'
  ], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert 'median 71.00' in out.stdout and 'not finished: seeds [2]' in out.stdout
  assert json.load(open(tmp_path / 'seeds_summary.json'))['median'] == 0.71
  cmds = subprocess.run([
      sys.executable, '-m', 'tools.seeds', '--config', 'configs/demo.py', '--workdir',
      str(tmp_path), '--seeds', '5', '--print_commands', '--config.optim.lr=0.01'
  ], cwd=ROOT, capture_output=True, text=True).stdout
  assert '--config.seed=5' in cmds and '--config.optim.lr=0.01' in cmds and 'seed_5' in cmds
  for s, v in values.items():
    with open(os.path.join(seeds.seed_workdir(str(tmp_path), s), 'eval_open_vocabulary.json'),
              'w') as f:
      json.dump({'miou_unseen': v / 10}, f)
  out = subprocess.run([
      sys.executable, '-m', 'tools.seeds', '--config', 'configs/demo.py', '--workdir',
      str(tmp_path), '--seeds', '0,1,3', '--collect', '--result', 'eval_open_vocabulary.json',
      '--key', 'miou_unseen'
  ], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert 'miou_unseen of eval_open_vocabulary.json over 3 seed(s)' in out.stdout
  assert 'median 7.10' in out.stdout
  assert json.load(open(tmp_path /
                        'seeds_summary_eval_open_vocabulary_miou_unseen.json'))['median'] == 0.071
