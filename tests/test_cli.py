"""The command line as a user runs it (`python -m hvl_jax.main`, tiny config, two micro-steps per
optimizer step): train, then evaluate also on class names given at inference; a run stopped by
SIGTERM (checkpoint, exit 75), resumed, killed with SIGKILL, resumed again ends with the
parameters of the uninterrupted run; a corrupt newest checkpoint falls back to the previous one;
`--mode eval` reproduces training's final mIoU; `--mode predict` writes palette PNGs, overlays and
the class names, also for names given at inference; a corrupt input image is named in one line."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from hvl_jax.common import checkpoint as ckpt_lib
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets
from hvl_jax.data import synthetic
from hvl_jax.models import hvl
from hvl_jax.training import optim
from tiny import CLASS_NAMES
import tiny_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


# The command line runs on one simulated device. On two, a resumed run's train step once hung
# until XLA aborted it: one device waited in an all-gather, the other in the all-reduce of the
# Hungarian matching's loop condition (XLA's CPU runtime ran the two independent collectives in
# different orders on 2 cores); two devices are tested in process (tests/test_train.py).
ONE_DEVICE = os.environ.get('XLA_FLAGS', '').replace('--xla_force_host_platform_device_count=2',
                                                    '--xla_force_host_platform_device_count=1')


def start(workdir, *args, mode='train', merged=False):
  """The command in a subprocess; `merged` sends its stderr to its stdout (read line by line)."""
  cmd = [
      sys.executable, '-m', 'hvl_jax.main', '--config', 'tests/tiny_cli.py', '--workdir',
      str(workdir), f'--config.train.steps={STEPS}', '--mode', mode
  ] + list(args)
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=ONE_DEVICE)
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True)


def run(workdir, *args, mode='train'):
  process = start(workdir, *args, mode=mode)
  out, err = process.communicate(timeout=900)
  return process.returncode, out, err


def wait_for(path, process, deadline_s=900):
  deadline = time.time() + deadline_s
  while time.time() < deadline and process.poll() is None and not path.exists():
    time.sleep(0.05)


def final_state(checkpoints):
  config = tiny_cli.get_config()
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  tx_fn = lambda p: optim.make_optimizer(config, p, 10)
  abstract = state_lib.abstract_state(config, model, clip, tx_fn)
  return ckpt_lib.Checkpointer(str(checkpoints), async_save=False).restore(abstract), abstract


@pytest.mark.slow
def test_train_preempt_kill_resume_eval_predict(tmp_path):
  full = tmp_path / 'full'
  named = f'--config.inference.class_names={synthetic.CLASS_NAMES!r}'    # the world's 9 classes
  rc, out, err = run(full, named)
  assert rc == 0, out + err
  assert f'[{STEPS}/{STEPS}]' in out and 'mIoU' in out
  final_miou = json.loads((full / 'eval_final.json').read_text())['miou']
  # ... and, at the end of training, the open-vocabulary evaluation on them.
  assert json.loads((full / 'eval_open_vocabulary.json').read_text())['num_images'] == 4

  # SIGTERM as soon as the first step is logged: the run finishes its step and checkpoints it.
  interrupted = tmp_path / 'interrupted'
  checkpoints = interrupted / 'checkpoints'
  preempted = start(interrupted, '--config.train.log_every=1', merged=True)
  lines = []
  for line in preempted.stdout:
    lines.append(line)
    if line.startswith('[1/'):
      preempted.send_signal(signal.SIGTERM)
      break
  out1 = ''.join(lines) + preempted.stdout.read()
  preempted.wait(timeout=900)
  assert preempted.returncode == 75, out1
  assert 'preempted (SIGTERM) after step' in out1 and 'mIoU' not in out1
  stopped = [int(n) for n in os.listdir(checkpoints)]
  assert len(stopped) == 1 and 1 <= stopped[0] < STEPS, stopped

  # Resumed, then killed with SIGKILL once checkpoint 4 is written (unless the run is past it).
  resumed = start(interrupted, merged=True)
  if stopped[0] < 4:
    wait_for(checkpoints / '4', resumed)
    resumed.send_signal(signal.SIGKILL)
  out2, _ = resumed.communicate(timeout=900)
  assert f'from step {stopped[0]}' in out2, out2
  assert (checkpoints / '4').exists()
  rc, out3, err = run(interrupted)
  assert rc == 0, out3 + err

  # Checkpoints are numbered by optimizer step and the interrupted run ends where the full one does.
  (a, sa), abstract = final_state(full / 'checkpoints')
  (b, sb), _ = final_state(checkpoints)
  assert sa == sb == STEPS and int(a.step) == int(b.step) == STEPS
  assert int(optim.micro_step(a.opt_state)) == 0
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a.params,
               b.params)

  # A corrupt newest checkpoint falls back to the previous one with a warning.
  for root, _, files in os.walk(checkpoints / str(STEPS) / 'state'):
    for f in files:
      with open(os.path.join(root, f), 'wb') as fh:
        fh.write(b'corrupt')
  _, step = ckpt_lib.Checkpointer(str(checkpoints), async_save=False).restore(abstract)
  assert step == 4

  # Evaluation of the full run's last checkpoint reproduces its final evaluation.
  rc, out, err = run(full, '--checkpoint', str(full / 'checkpoints' / str(STEPS)), mode='eval')
  assert rc == 0, out + err
  evaluated = json.loads((full / 'eval_eval.json').read_text())
  assert evaluated['miou'] == pytest.approx(final_miou, abs=1e-6) and evaluated['num_images'] == 4
  assert 'mIoU' in (full / 'eval_eval.txt').read_text()

  # Photos of two sizes, an unreadable one (named in one line; the others are still segmented),
  # and one above inference.max_side (4 x the 64 crop): segmented at 256 px, told once, its class
  # map at its own size.
  images = tmp_path / 'images'
  images.mkdir()
  for i in range(2):
    image, _ = synthetic.make_scene(seed=7, index=i, size=40 + 8 * i, num_classes=len(CLASS_NAMES))
    Image.fromarray(image).save(images / f'scene_{i}.png')
  (images / 'broken.png').write_bytes(b'not a png')
  large, _ = synthetic.make_scene(seed=7, index=2, size=300, num_classes=len(CLASS_NAMES))
  Image.fromarray(large).save(images / 'large.png')
  preds = tmp_path / 'preds'
  rc, out, err = run(full, '--input', str(images), '--output', str(preds), mode='predict')
  lines = err.strip().splitlines()
  assert rc == 1 and 'Traceback' not in err, err
  assert [l for l in lines if 'broken.png' in l] == [lines[-2]
                                                    ] and lines[-2].startswith('error: '), err
  assert lines[-1].startswith('error: 1 of 4 images could not be read'), err
  assert out.count('note: a photo whose long side exceeds 256 px') == 1, out
  assert sorted(os.listdir(preds)) == [
      'classes.json', 'large.png', 'large_overlay.jpg', 'scene_0.png', 'scene_0_overlay.jpg',
      'scene_1.png', 'scene_1_overlay.jpg'
  ]
  assert Image.open(preds / 'large.png').size == (300, 300)
  index = Image.open(preds / 'scene_1.png')
  assert index.mode == 'P' and index.size == (48, 48)
  assert np.asarray(index).max() < len(CLASS_NAMES)
  assert Image.open(preds / 'scene_1_overlay.jpg').size == (48, 48)
  assert json.loads(
      (preds / 'classes.json').read_text()) == list(synthetic.CLASS_NAMES[:len(CLASS_NAMES)])

  # Open vocabulary: the world's 9 class names at inference.
  for name in ('broken.png', 'large.png'):
    (images / name).unlink()
  rc, out, err = run(full, '--input', str(images), '--output', str(tmp_path / 'named'), named,
                     mode='predict')
  assert rc == 0, out + err
  assert json.loads(
      (tmp_path / 'named' / 'classes.json').read_text()) == list(synthetic.CLASS_NAMES)
  assert np.asarray(Image.open(tmp_path / 'named' / 'scene_1.png')).max() < len(
      synthetic.CLASS_NAMES)
