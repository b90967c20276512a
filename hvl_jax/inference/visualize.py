"""Colours for class maps: the VOC palette, index PNGs, overlays and image strips."""
import io

import numpy as np
from PIL import Image

from hvl_jax.common import storage


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


def overlay(image: np.ndarray, classes: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """image (H, W, 3) uint8 blended with the palette colours of classes (H, W) -> (H, W, 3) uint8."""
  return (image * (1 - alpha) + palette()[classes] * alpha).astype(np.uint8)


def strip(image: np.ndarray, prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
  """image | prediction | label side by side, (H, 3W, 3) uint8 (255 = ignore has its own colour)."""
  pal = palette()
  return np.concatenate([image, pal[prediction], pal[label]], axis=1)


def save_prediction(classes: np.ndarray, image: np.ndarray, out_dir: str, name: str,
                    alpha: float = 0.5):
  """Writes <name>.png (palette index PNG) and <name>_overlay.jpg."""
  index = Image.fromarray(classes.astype(np.uint8), mode='P')
  index.putpalette(palette().ravel().tolist())
  storage.write_bytes(storage.join(out_dir, f'{name}.png'), encoded(index, 'PNG'))
  storage.write_bytes(storage.join(out_dir, f'{name}_overlay.jpg'),
                      encoded(Image.fromarray(overlay(image, classes, alpha)), 'JPEG', quality=90))


def encoded(im: Image.Image, fmt: str, **options) -> bytes:
  buf = io.BytesIO()
  im.save(buf, fmt, **options)
  return buf.getvalue()
