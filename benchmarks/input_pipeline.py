r"""Benchmark: training input pipeline throughput per CPU core (JPEG decode + augmentation), and
the cores it takes to feed a train step.

  python -m benchmarks.input_pipeline [--images 64] [--size 500x375] [--crop 512] \
      [--step_ms 503.6] [--target_ms 131] [--images_per_step 16]

Writes VOC-sized JPEGs and index PNGs to a temporary directory in the VOC layout, then times, on
one core (no workers): decoding, the labeled path (decode + scale/crop/flip), the unlabeled path
with the strong views made on the host (weak view + two strong views + CutMix boxes,
data.strong_view.where='host') and with them made in the train step (the weak view only, 'device'),
and the mixed batch a train step consumes (as many unlabeled as labeled images) for both. The
cores needed divide a step's images per second by the mixed rate: for the step measured on an
H200 (--step_ms, benchmarks/RESULTS.md) and for a step at 35% MFU (--target_ms). What the device
path costs inside the step: `python -m benchmarks.train_step --config configs/demo.py --variant
host:data.strong_view.where=host` (step times side by side) and `--flops_only` on configs/voc_92.py.
"""
import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from configs import base
from hvl_jax.data import files, transforms


def write_fixture(root: str, n: int, w: int, h: int):
  rng = np.random.default_rng(0)
  entries = []
  yy, xx = np.mgrid[:h, :w]
  for i in range(n):
    img = (np.stack([xx * (i + 1) % 255, yy * 3 % 255, (xx + yy) % 255], -1)
           + rng.integers(0, 40, (h, w, 3))).astype(np.uint8)
    os.makedirs(f'{root}/JPEGImages', exist_ok=True)
    os.makedirs(f'{root}/SegmentationClass', exist_ok=True)
    Image.fromarray(img).save(f'{root}/JPEGImages/{i:05d}.jpg', quality=90)
    Image.fromarray(((xx // 50 + yy // 50 + i) % 21).astype(
        np.uint8)).save(f'{root}/SegmentationClass/{i:05d}.png')
    entries.append((f'JPEGImages/{i:05d}.jpg', f'SegmentationClass/{i:05d}.png'))
  return entries


def rate(fn, n):
  fn(0)
  t = time.perf_counter()
  for i in range(n):
    fn(i)
  return n / (time.perf_counter() - t)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--images', type=int, default=64)
  parser.add_argument('--size', default='500x375')
  parser.add_argument('--crop', type=int, default=512)
  parser.add_argument('--step_ms', type=float, default=503.6,
                      help='a measured step (VOC 8+8 on an H200)')
  parser.add_argument('--target_ms', type=float, default=131.0, help='the step at 35%% MFU')
  parser.add_argument('--images_per_step', type=int, default=16)
  args = parser.parse_args()
  w, h = map(int, args.size.split('x'))
  cfg = base.get_config().data
  cfg.crop_size = args.crop
  with tempfile.TemporaryDirectory() as root:
    entries = write_fixture(root, args.images, w, h)
    src = files.FileSource(root, entries, 21)
    n = args.images
    decode = rate(lambda i: src[i % n], n)
    lab = rate(lambda i: transforms.labeled_train(src[i % n], np.random.default_rng(i), cfg), n)
    unlabeled = {}
    for where in ('host', 'device'):
      cfg.strong_view.where = where
      unlabeled[where] = rate(
          lambda i: transforms.unlabeled_train(src[i % n], np.random.default_rng(i), cfg), n)
  print(f'one CPU core, {w}x{h} JPEGs -> {args.crop}x{args.crop} crops:')
  print(f'  decode only (image + label)                  {decode:7.1f} images/s')
  print(f'  labeled (decode + geometric)                 {lab:7.1f} images/s')
  for where, what in (('host', 'weak + 2 strong views + boxes'), ('device', 'weak view only')):
    print(f'  unlabeled, strong views on the {where:6s} ({what}) {unlabeled[where]:7.1f} images/s')
  for where in ('host', 'device'):
    mixed = 2 / (1 / lab + 1 / unlabeled[where])
    need = lambda ms: args.images_per_step / (ms / 1e3) / mixed
    print(
        f'  mixed 1:1 batch, strong views on the {where:6s} {mixed:7.1f} images/s per core, '
        f'{mixed / decode:.2f} of decode-only; cores to feed a {args.step_ms:.0f} ms step: '
        f'{need(args.step_ms):.1f}, '
        f'a {args.target_ms:.0f} ms step (35% MFU): {need(args.target_ms):.1f}')


if __name__ == '__main__':
  main()
