"""The label-count curve's record, table and plot from finished runs (tools.label_curve
--collect)."""
import json
import os
import subprocess
import sys

import numpy as np

from tools import label_curve, seeds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_run(workdir, name, seed, miou):
  path = seeds.seed_workdir(os.path.join(workdir, name), seed)
  os.makedirs(path)
  with open(os.path.join(path, 'eval_final.json'), 'w') as f:
    json.dump({'miou': miou}, f)


def test_collect_writes_the_curve_its_gains_and_the_plot(tmp_path):
  rng = np.random.default_rng(0)
  values = {}
  for n in (4, 16):
    for method in ('semi', 'supervised'):
      for s in (0, 1, 2):
        values[method, n, s] = float(rng.uniform(0.3, 0.7))
        fake_run(str(tmp_path), f'{method}_{n}', s, values[method, n, s])
  for s in (0, 1):      # seed 2 of the bound has not finished
    fake_run(str(tmp_path), 'bound', s, 0.8 + s / 100)
  out = subprocess.run([
      sys.executable, '-m', 'tools.label_curve', '--workdir',
      str(tmp_path), '--counts', '4,16', '--collect'
  ], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  record = json.load(open(tmp_path / 'label_curve.json'))
  assert record['counts'] == [4, 16] and record['seeds'] == [0, 1, 2]
  for n in (4, 16):
    gains = [values['semi', n, s] - values['supervised', n, s] for s in (0, 1, 2)]
    np.testing.assert_allclose(record['gain'][str(n)]['median'], np.median(gains))
    np.testing.assert_allclose(record['gain'][str(n)]['min'], min(gains))
    np.testing.assert_allclose(record['semi'][str(n)]['median'],
                               np.median([values['semi', n, s] for s in range(3)]))
  assert record['bound']['1024']['per_seed'] == {'0': 0.8, '1': 0.81}
  assert '| 1024 (bound, all labeled) | - | 80.5 (80.0, 81.0) | - |' in out.stdout
  png = (tmp_path / 'label_curve.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000


def test_commands_name_each_run_and_its_count(tmp_path):
  out = subprocess.run([
      sys.executable, '-m', 'tools.label_curve', '--workdir',
      str(tmp_path), '--counts', '8', '--seeds', '1', '--print_commands', '--semi.train.steps=7'
  ], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 3                # semi, supervised, bound
  assert 'configs/demo.py' in lines[0] and 'semi_8/seed_1' in lines[
      0] and '--config.train.steps=7' in lines[0]
  assert 'configs/demo_supervised.py' in lines[1]
  assert '--config.data.synthetic_labeled=8' in lines[1]
  assert 'bound/seed_1' in lines[2] and '--config.data.synthetic_labeled=1024' in lines[2]
  assert '--config.train.steps=7' not in lines[1]


def test_runs_list_the_bound_last():
  assert label_curve.runs([4, 8], 100,
                          True) == [('semi', 4, 'semi'), ('supervised', 4, 'supervised'),
                                    ('semi', 8, 'semi'), ('supervised', 8, 'supervised'),
                                    ('bound', 100, 'supervised')]
