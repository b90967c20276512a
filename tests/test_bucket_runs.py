"""Runs whose workdir is a bucket (gs://, a real GCS emulator: tests/gcs_emulator.py), as a user
starts them: train, kill -9 and the same command again (the parameters of the uninterrupted run),
`--mode eval`, `--mode predict` into the bucket, `Segmenter.load('gs://...')`, `tools.export` into
the bucket; two processes (launch/multihost.sh on localhost) writing one run; a checkpoint whose
upload was cut off is not taken as the newest; a store that stops mid-run ends the run with one
line naming it, the checkpoints finished before stay, and once the store is back the same command
resumes. No local folder named `gs:` appears."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import gcsfs
import jax
import numpy as np
from PIL import Image
import pytest

from hvl_jax.common import storage
from hvl_jax.data import synthetic
from hvl_jax.inference import segmenter
import gcs_emulator
import test_cli
from tiny import CLASS_NAMES

ROOT = test_cli.ROOT


@pytest.fixture
def emulator(tmp_path, monkeypatch):
  """An emulator keeping its objects in a folder (a restarted one serves them again); this
  process's libraries pointed at it."""
  e = gcs_emulator.Emulator(data_dir=str(tmp_path / 'store')).start()
  for k, v in e.env.items():
    monkeypatch.setenv(k, v)
  gcsfs.GCSFileSystem.clear_instance_cache()
  yield e
  e.stop()
  gcsfs.GCSFileSystem.clear_instance_cache()


def start(emulator, cwd, workdir, *args, mode='train', module='hvl_jax.main'):
  if module == 'hvl_jax.main':
    args = ('--config', os.path.join(ROOT, 'tests', 'tiny_cli.py'), '--workdir', workdir,
            f'--config.train.steps={test_cli.STEPS}', '--mode', mode) + args
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=test_cli.ONE_DEVICE, **emulator.env)
  return subprocess.Popen([sys.executable, '-m', module, *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(emulator, cwd, workdir, *args, **kwargs):
  process = start(emulator, cwd, workdir, *args, **kwargs)
  out, err = process.communicate(timeout=900)
  assert process.returncode == 0, out + err
  return out


def wait_for_object(emulator, name, process, deadline_s=900):
  deadline = time.time() + deadline_s
  while time.time() < deadline and process.poll() is None and not emulator.has(name):
    time.sleep(0.1)
  return emulator.has(name)


def objects(prefix):
  """Every object under `prefix`, relative to it (a listing as a user sees it)."""
  return sorted(f'{rel}/{n}' if rel else n for rel, _, names in storage.walk(prefix) for n in names)


@pytest.mark.slow
def test_a_run_in_a_bucket(emulator, tmp_path):
  full, cut = 'gs://hvl/full', 'gs://hvl/cut'
  out = run(emulator, tmp_path, full)
  assert f'[{test_cli.STEPS}/{test_cli.STEPS}]' in out and f'workdir {full}' in out
  written = objects(full)
  print('\n'.join(['objects of a run in gs://hvl/full:'] + written))
  for name in ('config_train.json', 'metrics.jsonl', 'eval_final.json', 'eval_final.txt',
               f'checkpoints/{test_cli.STEPS}/commit_success.txt'):
    assert name in written, name
  assert any(n.startswith('tensorboard/events.out.tfevents') for n in written)
  final_miou = json.loads(storage.read_text(f'{full}/eval_final.json'))['miou']

  # kill -9 once checkpoint 4 is in the bucket, then the same command.
  killed = start(emulator, tmp_path, cut)
  assert wait_for_object(emulator, 'cut/checkpoints/4/commit_success.txt', killed)
  killed.send_signal(signal.SIGKILL)
  killed.communicate(timeout=60)
  out = run(emulator, tmp_path, cut)
  assert 'from step 4' in out or 'from step 6' in out, out
  (a, sa), _ = test_cli.final_state(f'{full}/checkpoints')
  (b, sb), _ = test_cli.final_state(f'{cut}/checkpoints')
  assert sa == sb == test_cli.STEPS
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a.params,
               b.params)

  # An upload cut off before Orbax marks it finished (commit_success.txt) is never the newest:
  # checkpoint 6's objects as step 8, without the marks.
  for name in objects(f'{full}/checkpoints/{test_cli.STEPS}'):
    if not name.endswith('commit_success.txt'):
      storage.write_bytes(f'{full}/checkpoints/8/{name}',
                          storage.read_bytes(f'{full}/checkpoints/{test_cli.STEPS}/{name}'))
  (_, newest), _ = test_cli.final_state(f'{full}/checkpoints')
  assert newest == test_cli.STEPS
  storage.path(f'{full}/checkpoints/8').rmtree()

  run(emulator, tmp_path, full, mode='eval')
  assert json.loads(storage.read_text(f'{full}/eval_eval.json'))['miou'] == pytest.approx(
      final_miou, abs=1e-6)

  images = tmp_path / 'images'
  images.mkdir()
  image, _ = synthetic.make_scene(seed=7, index=0, size=48, num_classes=len(CLASS_NAMES))
  Image.fromarray(image).save(images / 'scene.png')
  run(emulator, tmp_path, full, '--input', str(images), '--output', 'gs://hvl/preds',
      mode='predict')
  assert objects('gs://hvl/preds') == ['classes.json', 'scene.png', 'scene_overlay.jpg']
  predicted = np.asarray(Image.open(io.BytesIO(storage.read_bytes('gs://hvl/preds/scene.png'))))
  np.testing.assert_array_equal(segmenter.Segmenter.load(full).segment(image), predicted)

  run(emulator, tmp_path, None, '--workdir', full, '--output', 'gs://hvl/export', '--platforms',
      'cpu', module='tools.export')
  assert objects('gs://hvl/export') == ['classes.json', 'export.json', 'segmenter.jaxexport']
  assert not (tmp_path / 'gs:').exists() and not os.path.exists(os.path.join(ROOT, 'gs:'))


@pytest.mark.slow
def test_a_store_that_stops_mid_run(emulator, tmp_path):
  workdir, timeout = 'gs://hvl/run', '--config.train.storage_timeout_s=20'
  running = start(emulator, tmp_path, workdir, '--config.train.steps=40', timeout)
  assert wait_for_object(emulator, 'run/checkpoints/2/commit_success.txt', running)
  emulator.stop()
  stopped = time.time()
  out, err = running.communicate(timeout=300)
  lines = err.strip().splitlines()
  assert running.returncode == 1 and 'Traceback' not in err, out + err
  assert lines[-1].startswith(
      f'error: {workdir}/') and 'did not answer within 20 s' in lines[-1], lines[-1]
  assert time.time() - stopped < 120

  emulator.start()
  out = run(emulator, tmp_path, workdir, timeout)
  resumed_from = int(out.split(' from step ')[1].split()[0])
  assert resumed_from >= 2 and resumed_from % 2 == 0, out
  assert f'[{test_cli.STEPS}/{test_cli.STEPS}]' in out
  assert not (tmp_path / 'gs:').exists()


@pytest.mark.slow
def test_two_processes_write_one_run(emulator, tmp_path):
  """launch/multihost.sh twice on localhost (one CPU device each, JAX's CPU collectives between
  them): one checkpoint, one metrics log, and a single process restores what they wrote."""
  workdir = 'gs://hvl/two'
  env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, XLA_FLAGS=test_cli.ONE_DEVICE,
             **emulator.env)
  coordinator = f'127.0.0.1:{gcs_emulator.free_port()}'
  processes = [
      subprocess.Popen([
          'bash',
          os.path.join(ROOT, 'launch', 'multihost.sh'), coordinator, '2',
          str(i),
          os.path.join(ROOT, 'tests', 'tiny_cli.py'), workdir,
          f'--config.train.steps={test_cli.STEPS}'
      ], cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      for i in range(2)
  ]
  try:
    outs = [p.communicate(timeout=900)[0] for p in processes]
  finally:
    for p in processes:
      p.kill()
  for p, out in zip(processes, outs):
    assert p.returncode == 0, out
    assert 'devices  2 x cpu' in out, out
  written = objects(workdir)
  print('\n'.join(['objects of a two-process run in gs://hvl/two:'] + written))
  steps = sorted(int(n.split('/')[1]) for n in written
                 if n.startswith('checkpoints/') and n.endswith('/commit_success.txt'))
  assert steps[-1] == test_cli.STEPS, written
  assert not any('tmp' in n.split('/')[1] for n in written if n.startswith('checkpoints/')), written
  logged = [
      json.loads(line)['step']
      for line in storage.read_text(f'{workdir}/metrics.jsonl').splitlines()
  ]
  assert logged == sorted(set(logged)) and logged[-1] == test_cli.STEPS, logged
  trained = json.loads(storage.read_text(f'{workdir}/eval_final.json'))['miou']
  run(emulator, tmp_path, workdir, mode='eval')
  assert json.loads(storage.read_text(f'{workdir}/eval_eval.json'))['miou'] == pytest.approx(
      trained, abs=1e-6)
  assert not (tmp_path / 'gs:').exists()
