"""Colours of class maps: the Pascal VOC palette, index PNGs that read back as the classes,
overlays and strips."""
import numpy as np
from PIL import Image

from hvl_jax.inference import visualize

# Pascal VOC's published colours of classes 0-4 (background, aeroplane, bicycle, bird, boat),
# 15 (person) and 255 (void).
VOC_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
               15: (192, 128, 128), 255: (224, 224, 192)}


def test_palette_is_pascal_vocs():
  pal = visualize.palette()
  assert pal.shape == (256, 3) and pal.dtype == np.uint8
  for k, colour in VOC_COLOURS.items():
    assert tuple(pal[k]) == colour, k
  assert len({tuple(c) for c in pal}) == 256


def test_saved_prediction_reads_back(tmp_path, rng):
  classes = rng.randint(0, 21, (12, 17))
  image = rng.randint(0, 256, (12, 17, 3)).astype(np.uint8)
  visualize.save_prediction(classes, image, str(tmp_path), 'a', alpha=0.25)
  index = Image.open(tmp_path / 'a.png')
  assert index.mode == 'P'
  np.testing.assert_array_equal(np.asarray(index), classes)
  np.testing.assert_array_equal(np.asarray(index.getpalette(), np.uint8).reshape(-1, 3)[:21],
                                visualize.palette()[:21])
  blended = np.asarray(Image.open(tmp_path / 'a_overlay.jpg').convert('RGB'), np.float32)
  ref = image * 0.75 + visualize.palette()[classes] * 0.25
  # JPEG keeps each block's mean colour, not the noise.
  assert blended.shape == (12, 17, 3)
  np.testing.assert_allclose(blended.mean((0, 1)), ref.mean((0, 1)), atol=4)


def test_overlay_and_strip(rng):
  classes = rng.randint(0, 5, (4, 6))
  image = rng.randint(0, 256, (4, 6, 3)).astype(np.uint8)
  pal = visualize.palette()
  np.testing.assert_array_equal(visualize.overlay(image, classes, 0.5),
                                (image * 0.5 + pal[classes] * 0.5).astype(np.uint8))
  label = classes.copy()
  label[0] = 255
  strip = visualize.strip(image, classes, label)
  assert strip.shape == (4, 18, 3)
  np.testing.assert_array_equal(strip[:, :6], image)
  np.testing.assert_array_equal(strip[0, 12:], np.tile(pal[255], (6, 1)))
