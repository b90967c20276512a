"""A generated folder dataset in the real layout (configs/folder.py): 4 classes, odd image sizes,
nested sub-folders, a grayscale and an EXIF-rotated photo, labeled and unlabeled training images
and a val split. Scenes: a coloured background (label 0) with a red square (1), a green disk (2)
and a blue horizontal band (3)."""
import os

import numpy as np
from PIL import Image

CLASSES = ('background', 'red square', 'green disk', 'blue band')
COLOURS = ((90, 90, 90), (220, 30, 30), (30, 200, 40), (40, 60, 220))
EXIF_ORIENTATION = 0x0112


def scene(rng, h, w):
  """(image (h, w, 3) uint8, label (h, w) uint8)."""
  label = np.zeros((h, w), np.uint8)
  yy, xx = np.mgrid[:h, :w]
  s = int(rng.randint(8, max(9, min(h, w) // 2)))
  y, x = rng.randint(0, h - s), rng.randint(0, w - s)
  label[y:y + s, x:x + s] = 1
  r = rng.randint(5, max(6, min(h, w) // 4))
  cy, cx = rng.randint(r, h - r), rng.randint(r, w - r)
  label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
  band = rng.randint(0, h - 6)
  label[band:band + 6] = 3
  image = np.asarray(COLOURS, np.float64)[label] + rng.randn(h, w, 3) * 12
  return np.clip(image, 0, 255).astype(np.uint8), label


def save(root, rel, array, **kwargs):
  path = os.path.join(root, rel)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)
  return path


def make(root, seed: int = 0, crop: int = 64):
  """Writes the dataset under `root`; returns {'rotated': (image rel path, upright label)}."""
  rng = np.random.RandomState(seed)
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(CLASSES) + '\n')
  sizes = [(71, 53), (90, 67), (64, 64), (101, 77), (66, 95), (80, 80)]
  labeled = [
      'field/a_0.jpg', 'field/north/b_1.png', 'c_2.jpg', 'field/north/d_3.jpg', 'e_4.png', 'f_5.jpg'
  ]
  for (h, w), rel in zip(sizes, labeled):
    image, label = scene(rng, h, w)
    save(root, f'images/train/{rel}', image, **({'quality': 95} if rel.endswith('.jpg') else {}))
    save(root, f'labels/train/{os.path.splitext(rel)[0]}.png', label)
  # A grayscale photo with its label.
  image, label = scene(rng, 75, 69)
  save(root, 'images/train/gray/g_6.png', image.mean(-1).astype(np.uint8))
  save(root, 'labels/train/gray/g_6.png', label)
  # A photo stored sideways with EXIF orientation 6 (shown turned 90 degrees clockwise); its
  # label is drawn on the upright photo, as annotation tools show it.
  upright, upright_label = scene(rng, 70, 92)
  stored = np.ascontiguousarray(np.rot90(upright, k=1))  # rotating it clockwise gives `upright`
  exif = Image.Exif()
  exif[EXIF_ORIENTATION] = 6
  save(root, 'images/train/phone/r_7.jpg', stored, quality=95, exif=exif.tobytes())
  save(root, 'labels/train/phone/r_7.png', upright_label)
  for i in range(6):
    image, _ = scene(rng, *[(68, 83), (99, 64), (64, 70), (77, 77), (85, 66), (64, 90)][i])
    save(root, f'images/train/unlabeled/u_{i}.jpg', image, quality=95)
  for i, (h, w) in enumerate([(crop, crop), (83, 71), (70, 101), (64, 88)]):
    image, label = scene(rng, h, w)
    save(root, f'images/val/v_{i}.png', image)
    save(root, f'labels/val/v_{i}.png', label)
  return {'rotated': ('images/train/phone/r_7.jpg', upright_label)}
