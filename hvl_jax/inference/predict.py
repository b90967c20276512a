"""Prediction on image files (`--mode predict`): index PNGs plus coloured overlays with the VOC
palette, and classes.json (the class name of each index; inference.class_names for
open-vocabulary inference). Images are read as `data.files` reads photos (EXIF orientation
applied), so the outputs match what a viewer shows."""
import json
import os
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


def predict_files(config, workdir: str, input_path: str, output_dir: str, checkpoint: Optional[str] = None):
  """Writes <output_dir>/<name>.png and <name>_overlay.jpg for each input image; returns the count."""
  paths = list_inputs(input_path)
  seg = segmenter.Segmenter.from_config(config, checkpoint or storage.join(workdir, 'checkpoints'))
  storage.write_text(storage.join(output_dir, 'classes.json'), json.dumps(list(seg.class_names), indent=0))
  step = max(1, seg.predictor.batch)
  for lo in range(0, len(paths), step):
    chunk = paths[lo:lo + step]
    images = [files.read_image(p) for p in chunk]
    for i, (path, image, classes) in enumerate(zip(chunk, images, seg.segment(images)), lo + 1):
      visualize.save_prediction(classes, image, output_dir, os.path.splitext(os.path.basename(path))[0])
      print(f'[{i}/{len(paths)}] {path} -> {output_dir}', flush=True)
  return len(paths)
