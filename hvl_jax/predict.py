"""Prediction on image files: index PNGs plus coloured overlays with the dataset palette."""
import os
from typing import Optional

import numpy as np
from PIL import Image

from hvl_jax import evaluate
from hvl_jax.data import datasets

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def palette(num_colours: int = 256) -> np.ndarray:
  """The Pascal VOC colour map (bit-interleaved), (num_colours, 3) uint8."""
  pal = np.zeros((num_colours, 3), np.uint8)
  for i in range(num_colours):
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    pal[i] = (r, g, b)
  return pal


def list_inputs(path: str):
  if os.path.isdir(path):
    files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
      raise datasets.DataError(f'{path}: no images ({", ".join(IMAGE_EXTENSIONS)}) in the directory')
    return files
  if not os.path.exists(path):
    raise datasets.DataError(f'{path}: no such image or directory')
  return [path]


def save_prediction(pred: np.ndarray, image: np.ndarray, out_dir: str, name: str, alpha: float = 0.5):
  """Writes <name>.png (palette index PNG) and <name>_overlay.jpg."""
  pal = palette()
  index = Image.fromarray(pred.astype(np.uint8), mode='P')
  index.putpalette(pal.ravel().tolist())
  index.save(os.path.join(out_dir, f'{name}.png'))
  overlay = (image * (1 - alpha) + pal[pred] * alpha).astype(np.uint8)
  Image.fromarray(overlay).save(os.path.join(out_dir, f'{name}_overlay.jpg'), quality=90)


def predict_files(config, workdir: str, input_path: str, output_dir: str, checkpoint: Optional[str] = None):
  files = list_inputs(input_path)
  model, params, _ = evaluate.restore_params(config, workdir, checkpoint)
  predictor = evaluate.Predictor(config, model)
  os.makedirs(output_dir, exist_ok=True)
  for i, path in enumerate(files, 1):
    image = datasets.load_image(path)
    pred = predictor.predict(params, image)
    save_prediction(pred, image, output_dir, os.path.splitext(os.path.basename(path))[0])
    print(f'[{i}/{len(files)}] {path} -> {output_dir}', flush=True)
  return len(files)
