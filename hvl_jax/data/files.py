"""Image and label files: the one reading policy, and a random-access source of file pairs.

What a user's folder may hold, and what the reader makes of it (docs/data.md, "Image files"):
- Images of any format PIL reads become (H, W, 3) uint8 RGB. Grayscale (L, 1), palette (P),
  CMYK and YCbCr are converted to RGB; an alpha channel (RGBA, LA, PA) is dropped; 16-bit
  images keep their high byte (as PIL reads 16-bit colour PNGs); colour profiles are not applied.
- The EXIF orientation of a photo is applied, so the pixels are the upright image the user sees
  in a viewer, and in annotation tools, which show photos upright: a label drawn on the upright
  photo matches it. Training, evaluation and prediction read images the same way. A label that
  matches the photo only as stored (before the rotation) is refused with one line naming both.
- Labels are index PNGs (one class id per pixel, 255 = ignore): 8-bit palette (P, the palette's
  indices are the ids), L, or 16-bit grayscale with values below 256. RGB colour masks are
  refused with a pointer to `tools.colour_masks`, which converts them.
"""
import hashlib
import io
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageOps

from hvl_jax.common import storage
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.common.errors import DataError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.ppm',
                    '.pgm')
LABEL_MODES = ('P', 'L', '1', 'I;16', 'I;16L', 'I;16B', 'I')
SIXTEEN_BIT = ('I;16', 'I;16L', 'I;16B', 'I')
COLOUR_MASK_FIX = (
    'convert colour masks to index PNGs with `python -m tools.colour_masks --colours colours.txt '
    '--input <masks> --output <labels>`')


def identity_labels(label: np.ndarray) -> np.ndarray:
  return label


def open_file(path: str, what: str) -> Image.Image:
  """The loaded PIL image at `path`, a local path or a URL (`what`: 'image' or 'label', for the
  messages)."""
  try:
    data = storage.read_bytes(path)
  except FileNotFoundError as e:
    raise DataError(f'{path}: {what} file not found') from e
  try:
    im = Image.open(io.BytesIO(data))
    im.load()        # raises on truncated files
    return im
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f'{path}: unreadable or truncated {what} ({e})') from e


def exif_orientation(im: Image.Image) -> int:
  """The EXIF orientation tag (1 = upright, 6 and 8 = rotated by 90 degrees, ...)."""
  try:
    return int(im.getexif().get(0x0112, 1))
  except (ValueError, TypeError, SyntaxError):      # a malformed EXIF block is read as upright
    return 1


def to_rgb(im: Image.Image, path: str) -> np.ndarray:
  """A PIL image of any mode -> (H, W, 3) uint8 RGB under the module's policy."""
  if im.mode in SIXTEEN_BIT:
    gray = np.asarray(im).astype(np.int64)
    return np.repeat((np.clip(gray, 0, 65535) >> 8).astype(np.uint8)[..., None], 3, axis=-1)
  if im.mode == 'F':
    raise DataError(f'{path}: a floating-point image; save it as 8- or 16-bit')
  return np.asarray(im.convert('RGB'))


def conversion(mode: str) -> str:
  """What the reading policy changes in an image of PIL mode `mode`, in a user's words ('' for
  nothing a user would miss)."""
  if mode in SIXTEEN_BIT:
    return 'a 16-bit image: read by its high byte (8 bits a channel)'
  if mode == 'CMYK':
    return 'a CMYK image: converted to RGB (its colour profile is not applied)'
  if mode in ('RGBA', 'LA', 'PA'):
    return 'its alpha channel is dropped'
  return ''


def upright_rgb(im: Image.Image, where: str) -> np.ndarray:
  """A PIL image -> (H, W, 3) uint8 RGB, upright (EXIF orientation applied); `where` names it."""
  try:
    upright = ImageOps.exif_transpose(im)
  except (ValueError, TypeError, SyntaxError, OSError):   # a malformed EXIF block: as stored
    upright = im
  return to_rgb(upright, where)


def read_image(path: str) -> np.ndarray:
  """(H, W, 3) uint8 RGB, upright (EXIF orientation applied)."""
  with open_file(path, 'image') as im:
    return upright_rgb(im, path)


def read_label(path: str) -> np.ndarray:
  """(H, W) label ids as stored (uint8, or int64 for 16-bit files), before any remapping."""
  with open_file(path, 'label') as im:
    if im.mode in ('RGB', 'RGBA'):
      raise DataError(
          f'{path}: label is an {im.mode} colour image; expected an index PNG (one class id per '
          f'pixel, '
          f'255 = ignore): {COLOUR_MASK_FIX}')
    if im.mode not in LABEL_MODES:
      raise DataError(
          f'{path}: label of mode {im.mode}; expected an 8-bit palette, 8-bit grayscale or 16-bit '
          'grayscale index PNG')
    label = np.asarray(im)
  if label.dtype == bool:
    label = label.astype(np.uint8)
  if label.dtype != np.uint8:
    label = label.astype(np.int64)
    if label.max(initial=0) > IGNORE_INDEX or label.min(initial=0) < 0:
      big = sorted(set(np.unique(label[(label > IGNORE_INDEX) | (label < 0)]).tolist()))[:8]
      raise DataError(
          f'{path}: label values {big} do not fit 8 bits; class ids are 0..K-1 and {IGNORE_INDEX} '
          '(ignore)')
  return label


def check_label(label: np.ndarray, num_classes: int, image_shape, where: str) -> np.ndarray:
  """Validates a remapped (H, W) label against its image; raises DataError naming `where`."""
  if label.shape != tuple(image_shape[:2]):
    raise DataError(f'{where}: label size {label.shape[1]}x{label.shape[0]} differs from its image '
                    f'{image_shape[1]}x{image_shape[0]}')
  bad = (label >= num_classes) & (label != IGNORE_INDEX)
  if bad.any():
    values = sorted(set(np.unique(label[bad]).tolist()))[:8]
    raise DataError(
        f'{where}: label values {values} outside [0, {num_classes}) and not {IGNORE_INDEX}')
  return label.astype(np.uint8)


def check_orientation(image_path: str, image_shape, label_path: str, label_shape):
  """One line naming both files when the label fits the photo only as stored, before its EXIF
  rotation (the label was drawn on, or saved from, the un-rotated pixels)."""
  if tuple(label_shape) == tuple(image_shape[:2]) or tuple(label_shape) != tuple(
      image_shape[:2])[::-1]:
    return
  with open_file(image_path, 'image') as im:
    orientation = exif_orientation(im)
  if orientation in (5, 6, 7, 8):     # the rotations by 90 degrees
    raise DataError(
        f'{label_path} is {label_shape[1]}x{label_shape[0]}, its image {image_path} is '
        f'{image_shape[1]}x{image_shape[0]} once turned upright by its EXIF orientation '
        f'({orientation}): '
        'save the label in the upright orientation, or save the image without the EXIF rotation')


def load_label(path: str, num_classes: int, remap, image_path: str, image_shape) -> np.ndarray:
  label = read_label(path)
  check_orientation(image_path, image_shape, path, label.shape)
  return check_label(remap(label), num_classes, image_shape, path)


class FileSource:
  """Random-access reader of (image, label) file pairs under a dataset root.

  entries: (image path, label path or None) relative to `root`; `remap` turns stored label ids
  into class ids (e.g. ADE20K's shift). Records: {'image' (H, W, 3) uint8, 'label' (H, W) uint8
  (with `with_labels`), 'name'}.
  """

  def __init__(self, root: str, entries: Sequence[Tuple[str, Optional[str]]], num_classes: int,
               remap=identity_labels, with_labels: bool = True):
    self.root, self.entries, self.num_classes, self.remap = root, list(entries), num_classes, remap
    self.with_labels = with_labels

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    image_rel, label_rel = self.entries[index]
    image_path = os.path.join(self.root, image_rel)
    image = read_image(image_path)
    record = dict(image=image, name=os.path.splitext(os.path.basename(image_rel))[0])
    if self.with_labels:
      record['label'] = load_label(os.path.join(self.root, label_rel), self.num_classes, self.remap,
                                   image_path, image.shape)
    return record

  def label_fingerprint(self) -> str:
    """Digest of the label files' paths and bytes (the rare-class statistics' cache key)."""
    h = hashlib.sha256()
    for _, label_rel in self.entries:
      path = os.path.join(self.root, label_rel)
      try:
        h.update(label_rel.encode() + b'\0' + hashlib.sha256(storage.read_bytes(path)).digest())
      except OSError as e:
        raise DataError(f'{path}: cannot read label file ({e})') from e
    return h.hexdigest()
