"""The path a new user walks with their own data, end to end on a generated folder dataset
(tests/folder_dataset.py: 4 classes, odd sizes, nested folders, a grayscale and an EXIF-rotated
photo): train a few steps with configs/folder.py:tiny -> --mode eval -> --mode predict ->
`Segmenter` -> tools.export -> the README's program, in a fresh process that never imports
hvl_jax, segments with the exported file what `Segmenter` segments."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hvl_jax import Segmenter
from hvl_jax.data import files
import folder_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_DEVICE = os.environ.get('XLA_FLAGS', '').replace('--xla_force_host_platform_device_count=2',
                                                    '--xla_force_host_platform_device_count=1')


def run(*args, module='hvl_jax.main'):
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=ONE_DEVICE)
  result = subprocess.run([sys.executable, '-m', module] + [str(a) for a in args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1200, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def readme_program() -> str:
  """The README's program that segments an image with the exported file."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  found = [b for b in blocks if b.startswith('# segment_with_export.py')]
  assert len(found) == 1
  return found[0]


@pytest.mark.slow
def test_from_a_folder_to_an_exported_segmenter(tmp_path):
  data, workdir = tmp_path / 'mine', tmp_path / 'run'
  folder_dataset.make(str(data))
  common = [
      '--config', 'configs/folder.py:tiny', '--workdir', workdir, f'--config.data.root={data}'
  ]
  out = run(*common, '--config.train.steps=3', '--config.train.log_every=1',
            '--config.data.labeled_batch=2', '--config.data.unlabeled_batch=2')
  assert 'dataset  folder at' in out and '4 classes' in out and '[3/3]' in out
  final = json.loads((workdir / 'eval_final.json').read_text())
  assert set(final['per_class_iou']) == set(folder_dataset.CLASSES) and final['num_images'] == 4

  run(*common, '--mode', 'eval')
  assert json.loads(
      (workdir / 'eval_eval.json').read_text())['miou'] == pytest.approx(final['miou'], abs=1e-9)

  inputs, predictions = tmp_path / 'photos', tmp_path / 'predictions'
  os.makedirs(inputs)
  for name in ('v_0.png', 'v_1.png', 'v_2.png'):
    os.link(data / 'images/val' / name, inputs / name)
  os.link(data / 'images/train/phone/r_7.jpg', inputs / 'r_7.jpg')
  run(*common, '--mode', 'predict', '--input', inputs, '--output', predictions)
  assert json.loads((predictions / 'classes.json').read_text()) == list(folder_dataset.CLASSES)

  seg = Segmenter.load(str(workdir))
  assert seg.class_names == folder_dataset.CLASSES
  names = sorted(os.listdir(inputs))
  maps = seg.segment([str(inputs / n) for n in names])         # one batch of all their windows
  for name, classes in zip(names, maps):
    # --mode predict is the Segmenter; the EXIF-rotated photo comes out upright (70 x 92).
    written = np.asarray(Image.open(predictions / (os.path.splitext(name)[0] + '.png')))
    np.testing.assert_array_equal(written, classes)
  assert maps[names.index('r_7.jpg')].shape == (70, 92)
  image = files.read_image(str(inputs / 'v_1.png'))
  probs = seg.probabilities(image)
  assert probs.shape == image.shape[:2] + (4,) and probs.dtype == np.float32
  np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
  np.testing.assert_array_equal(probs.argmax(-1), seg.segment(image))

  exported = tmp_path / 'exported'
  out = run('--workdir', workdir, '--output', exported, module='tools.export')
  record = json.loads((exported / 'export.json').read_text())
  assert record['crop'] == 64 and record['num_classes'] == 4 and record['platforms'] == [
      'cpu', 'cuda'
  ]
  assert record['source_checkpoint'].endswith(os.path.join('checkpoints', '3'))
  assert json.loads((exported / 'classes.json').read_text()) == list(folder_dataset.CLASSES)

  # The README's program in a fresh interpreter that cannot import hvl_jax (-I: no cwd, no
  # PYTHONPATH), on the crop-sized image (one window) and on larger ones (overlapping windows).
  program = tmp_path / 'segment_with_export.py'
  program.write_text(readme_program() + "\nassert 'hvl_jax' not in sys.modules\n")
  for name in ('v_0.png', 'v_1.png', 'v_2.png'):
    subprocess.run([
        sys.executable, '-I',
        str(program),
        str(exported),
        str(inputs / name),
        str(tmp_path / name)
    ], cwd=str(tmp_path), check=True, capture_output=True, text=True, timeout=600,
                   env=dict(os.environ, XLA_FLAGS=ONE_DEVICE))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), maps[names.index(name)])
