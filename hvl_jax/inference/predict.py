"""Prediction on image files (`--mode predict`): index PNGs plus coloured overlays with the VOC
palette, and classes.json (the class name of each index; inference.class_names for
open-vocabulary inference). Images are read as `data.files` reads photos (EXIF orientation
applied), so the outputs match what a viewer shows."""
import json
import os
import sys
from typing import Optional

from hvl_jax.common import storage
from hvl_jax.common.errors import DataError
from hvl_jax.data import files
from hvl_jax.inference import segmenter
from hvl_jax.inference import visualize


def list_inputs(path: str):
  if storage.is_dir(path):
    found = [storage.join(path, n) for n in storage.listdir(path)
             if n.lower().endswith(files.IMAGE_EXTENSIONS)]
    if not found:
      raise DataError(f'{path}: no images ({", ".join(files.IMAGE_EXTENSIONS)}) in the directory')
    return found
  if not storage.exists(path):
    raise DataError(f'{path}: no such image or directory')
  return [path]


def predict_files(config, workdir: str, input_path: str, output_dir: str,
                  checkpoint: Optional[str] = None):
  """Writes <output_dir>/<name>.png and <name>_overlay.jpg for each input image; returns the count.

  An image that cannot be read is named in one line on stderr and the others are segmented; a
  DataError at the end counts them. The first photo above inference.max_side is told of once."""
  paths = list_inputs(input_path)
  seg = segmenter.Segmenter.from_config(config, checkpoint or storage.join(workdir, 'checkpoints'))
  storage.write_text(storage.join(output_dir, 'classes.json'),
                     json.dumps(list(seg.class_names), indent=0))
  step, failed, told = max(1, seg.predictor.batch), [], False
  for lo in range(0, len(paths), step):
    read = []
    for number, path in enumerate(paths[lo:lo + step], lo + 1):
      try:
        read.append((number, path, files.read_image(path)))
      except DataError as e:
        print(f'error: {e}', file=sys.stderr, flush=True)
        failed.append(path)
    if not told and any(seg.predictor.capped(*image.shape[:2]) for _, _, image in read):
      print(f'note: {seg.predictor.limit_note()}', flush=True)
      told = True
    for (number, path,
         image), classes in zip(read,
                                seg.segment([image for _, _, image in read]) if read else []):
      visualize.save_prediction(classes, image, output_dir,
                                os.path.splitext(os.path.basename(path))[0])
      print(f'[{number}/{len(paths)}] {path} -> {output_dir}', flush=True)
  if failed:
    raise DataError(
        f'{len(failed)} of {len(paths)} images could not be read (named above); the other '
        f'{len(paths) - len(failed)} are in {output_dir}')
  return len(paths)
