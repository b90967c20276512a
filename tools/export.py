r"""Exports a trained segmenter as one file that runs without this codebase (`jax.export`).

  python -m tools.export --workdir runs/mine --output exported/ [--checkpoint DIR] \
      [--class_names "background,sheep,goat"] [--platforms cpu,cuda]

Writes, into --output (each file complete or not at all):
  segmenter.jaxexport  the network on one window with the trained parameters inside:
                       (N, S, S, 3) float32 RGB in [0, 255], N any -> (N, S, S, K) float32 class
                       probabilities (S the crop), lowered for each platform (no GPU is needed to
                       lower for CUDA)
  classes.json         the K class names, in the order of the probabilities
  export.json          crop (S), num_classes (K), platforms, the JAX version, the source checkpoint,
                       and the evaluation's window stride and short-side resize (0: none)
The README ("Your own data") has the numpy program that segments an image of any size with it.
"""
import argparse
import json
import os
import sys
import time

import jax

from hvl_jax.common import compilation_cache
from hvl_jax.common import storage
from hvl_jax.common.errors import CheckpointError, DataError
from hvl_jax.inference import segmenter

EXPORTED = 'segmenter.jaxexport'


def export(seg: segmenter.Segmenter, output: str, platforms) -> dict:
  """Writes the three files of the module docstring for `seg`; returns export.json's record."""
  t0 = time.time()
  exported = seg.export(platforms)
  blob = exported.serialize()
  p = seg.predictor
  record = dict(crop=seg.config.data.crop_size, num_classes=len(seg.class_names),
                platforms=list(exported.platforms), stride=p.stride,
                short_side=p.short_side if p.protocol == 'zegclip_sliding_window' else 0,
                jax_version=jax.__version__, source_checkpoint=seg.checkpoint,
                input='(N, S, S, 3) float32 RGB in [0, 255]',
                output='(N, S, S, K) float32 class probabilities', bytes=len(blob))
  # The function first, the records that describe it after: a reader never sees records of a
  # function that is not there.
  storage.write_bytes(storage.join(output, EXPORTED), blob)
  storage.write_text(storage.join(output, 'classes.json'),
                     json.dumps(list(seg.class_names), indent=0))
  storage.write_text(storage.join(output, 'export.json'), json.dumps(record, indent=2))
  print(
      f'{storage.join(output, EXPORTED)}: {len(blob) / 2**20:.1f} MiB, {record["num_classes"]} '
      f'classes, '
      f'{record["crop"]}x{record["crop"]} windows, for {", ".join(record["platforms"])} '
      f'(lowered in {time.time() - t0:.1f} s)', flush=True)
  return record


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True,
                      help='a training workdir (its config_train.json and checkpoints)')
  parser.add_argument('--output', required=True, help='directory for the three files')
  parser.add_argument('--checkpoint', default=None,
                      help='checkpoint directory or step (default: newest in workdir)')
  parser.add_argument('--class_names', default='',
                      help='comma-separated names to query (open vocabulary)')
  parser.add_argument('--platforms', default='cpu,cuda',
                      help='comma-separated: cpu, cuda, rocm, tpu')
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.class_names.split(',') if n.strip()] or None
  compilation_cache.enable()
  try:
    storage.check_writable(args.output, '--output')
    seg = segmenter.Segmenter.load(args.workdir, args.checkpoint, class_names=names)
    export(seg, args.output, [p.strip() for p in args.platforms.split(',') if p.strip()])
  except (DataError, CheckpointError, ValueError, FileNotFoundError) as e:
    if os.environ.get('HVL_TRACEBACK'):
      raise
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  main()
