"""Prediction on image files: index PNGs plus coloured overlays with the dataset palette, and
classes.json (the class name of each index; inference.class_names for open-vocabulary inference)."""
import json
import os
from typing import Optional

from hvl_jax import inference
from hvl_jax import open_vocabulary
from hvl_jax import state as state_lib
from hvl_jax import visualize
from hvl_jax.data import datasets
from hvl_jax.models import hvl

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def list_inputs(path: str):
  if os.path.isdir(path):
    files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
      raise datasets.DataError(f'{path}: no images ({", ".join(IMAGE_EXTENSIONS)}) in the directory')
    return files
  if not os.path.exists(path):
    raise datasets.DataError(f'{path}: no such image or directory')
  return [path]


def predict_files(config, workdir: str, input_path: str, output_dir: str, checkpoint: Optional[str] = None):
  """Writes <output_dir>/<name>.png and <name>_overlay.jpg for each input image; returns the count."""
  files = list_inputs(input_path)
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params = state_lib.restore_params(config, model, clip, checkpoint or os.path.join(workdir, 'checkpoints'))
  if config.inference.class_names:
    ov = open_vocabulary.build(config, clip)
    predictor, names = inference.Predictor.from_config(ov.config, ov.model, seen=ov.seen), ov.names
  else:
    predictor = inference.Predictor.from_config(config, model)
  prepared = predictor.prepare(params)
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, 'classes.json'), 'w') as f:
    json.dump(list(names), f, indent=0)
  for i, path in enumerate(files, 1):
    image = datasets.load_image(path)
    visualize.save_prediction(predictor.predict(prepared, image).classes, image, output_dir,
                              os.path.splitext(os.path.basename(path))[0])
    print(f'[{i}/{len(files)}] {path} -> {output_dir}', flush=True)
  return len(files)
