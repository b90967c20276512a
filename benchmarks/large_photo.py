r"""A phone-sized photo (4000 x 3000 JPEG) through `Segmenter.segment`: time and peak memory.

  python -m benchmarks.large_photo                        # the three configs below, one process
  each
  python -m benchmarks.large_photo --config configs/folder.py:tiny [--size 4000x3000]

Each config runs in a process of its own, so that its peak resident memory (RSS, the process's
`ru_maxrss`) is its own: the network with random parameters of the config's sizes (a pretrained
CLIP is replaced by a random one; a folder config gets four class names), then the photo read
from its file and segmented twice: the first call compiles, the second is the steady time.
Prints the size the photo was predicted at (inference.max_side), the peak RSS before and after the
photo, and both times.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import cv2
import jax
import numpy as np
from ml_collections import config_flags

from benchmarks.harness import benchmark_config, device_name
from hvl_jax.data import datasets
from hvl_jax.inference import segmenter
from hvl_jax.models import hvl

CONFIGS = ('configs/demo.py', 'configs/folder.py:tiny', 'configs/folder.py')
FOLDER_CLASSES = ('background', 'person', 'dog', 'bicycle')

_CONFIG = config_flags.DEFINE_config_file('config', None,
                                          'One config (path[:arg]); none: each of CONFIGS.')
_SIZE = flags.DEFINE_string('size', '4000x3000', 'The photo, WIDTHxHEIGHT.')


def prepared_config(config):
  """`config` with a random CLIP of its sizes; a folder config gets FOLDER_CLASSES."""
  config = benchmark_config(config)
  if config.data.name == 'folder':
    config.data.class_names, config.data.num_classes = FOLDER_CLASSES, len(FOLDER_CLASSES)
  return config


def photo(width: int, height: int) -> np.ndarray:
  """A smooth random (height, width, 3) uint8 photo (blobs of colour, as a JPEG holds them)."""
  small = np.random.default_rng(0).integers(0, 255, (height // 200 + 2, width // 200 + 2, 3),
                                            np.uint8)
  return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: str, config, width: int, height: int) -> str:
  config = prepared_config(config)
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)
  seg = segmenter.Segmenter(config, model, params, names)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'photo.jpg')
    cv2.imwrite(path, photo(width, height))
    before = peak_rss_mib()
    t = time.perf_counter()
    classes = seg.segment(path)
    first = time.perf_counter() - t
    t = time.perf_counter()
    seg.segment(path)
    steady = time.perf_counter() - t
  assert classes.shape == (height, width)
  h, w = seg.predictor.inference_size(height, width)
  return (f'| {spec} | {seg.predictor.protocol} | {width}x{height} -> {w}x{h} | {before:.0f} | '
          f'{peak_rss_mib():.0f} | {first:.1f} | {steady:.1f} |')


def main(argv):
  del argv
  width, height = (int(v) for v in _SIZE.value.split('x'))
  if _CONFIG.value is not None:
    spec = config_flags.get_config_filename(flags.FLAGS['config'])
    print(measure(spec, _CONFIG.value, width, height), flush=True)
    return
  print(f'{device_name()}, JAX {jax.__version__}')
  print(
      '| config | protocol | photo -> predicted at | peak RSS before (MiB) | '
      'peak RSS after (MiB) | '
      ''
      ''
      ''
      ''
      'first call (s) | second call (s) |')
  print('|---|---|---|---|---|---|---|')
  for spec in CONFIGS:
    out = subprocess.run([sys.executable, '-m', 'benchmarks.large_photo', f'--config={spec}',
                          f'--size={_SIZE.value}'], capture_output=True, text=True, check=False)
    print(out.stdout.strip() or f'| {spec} | failed: {out.stderr.strip().splitlines()[-1:]} |',
          flush=True)


if __name__ == '__main__':
  app.run(main)
