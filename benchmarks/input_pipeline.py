r"""Benchmark: training input pipeline throughput per CPU core (JPEG decode + augmentation).

  python -m benchmarks.input_pipeline [--images 64] [--size 500x375] [--crop 512]

Writes VOC-sized JPEGs and index PNGs to a temporary directory in the VOC layout, then
times, on one core (no workers), the labeled path (decode + scale/crop/flip) and the
unlabeled path (decode + weak view + two strong views + CutMix boxes), and the mixed
batch a train step consumes (as many unlabeled as labeled images).
"""
import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

from configs import base
from hvl_jax.data import datasets, transforms


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
    Image.fromarray(((xx // 50 + yy // 50 + i) % 21).astype(np.uint8)).save(f'{root}/SegmentationClass/{i:05d}.png')
    entries.append((f'JPEGImages/{i:05d}.jpg', f'SegmentationClass/{i:05d}.png'))
  return entries


def rate(fn, n):
  fn(0)
  t = time.perf_counter()
  for i in range(n):
    fn(i)
  return n / (time.perf_counter() - t)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--images', type=int, default=64)
  parser.add_argument('--size', default='500x375')
  parser.add_argument('--crop', type=int, default=512)
  args = parser.parse_args()
  w, h = map(int, args.size.split('x'))
  cfg = base.get_config().data
  cfg.crop_size = args.crop
  with tempfile.TemporaryDirectory() as root:
    entries = write_fixture(root, args.images, w, h)
    src = datasets.FileSource(root, entries, 21)
    n = args.images
    decode = rate(lambda i: src[i % n], n)
    lab = rate(lambda i: transforms.labeled_train(src[i % n], np.random.default_rng(i), cfg), n)
    unl = rate(lambda i: transforms.unlabeled_train(src[i % n], np.random.default_rng(i), cfg), n)
  mixed = 2 / (1 / lab + 1 / unl)
  print(f'one CPU core, {w}x{h} JPEGs -> {args.crop}x{args.crop} crops:')
  print(f'  decode only (image + label)        {decode:7.1f} images/s')
  print(f'  labeled (decode + geometric)       {lab:7.1f} images/s')
  print(f'  unlabeled (weak + 2 strong + boxes) {unl:6.1f} images/s')
  print(f'  mixed 1:1 batch                    {mixed:7.1f} images/s per core')


if __name__ == '__main__':
  main()
