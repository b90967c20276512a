"""A user's own dataset: a folder of photos, index-PNG labels and class names (data.name='folder').

The layout under data.root:
  classes.txt          one class name per line, in label order (the first line is label 0)
  images/train/...     training images, any format PIL reads, in any sub-folders
  labels/train/...     index PNGs (255 = ignore), each at its image's relative path with '.png'
  images/val/...       evaluation images, each with its label in labels/val/
  labels/val/...
  splits/labeled.txt   optional: image paths relative to images/train/, one per line

The labeled pool is the training images that have a label, or only those listed in
splits/labeled.txt; every other training image is unlabeled. How files are read (EXIF
orientation, image modes, label formats) is `files`' policy. Each mistake in the layout is one
`DataError` naming the file and the fix.
"""
import os
from typing import Dict, List, Optional, Tuple

from hvl_jax.common import storage
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.common.errors import DataError
from hvl_jax.data import files

CLASSES = 'classes.txt'
LABELED_LIST = os.path.join('splits', 'labeled.txt')
Entry = Tuple[str, Optional[str]]


def normalised(name: str) -> str:
  return ' '.join(name.lower().split())


def read_classes(root: str) -> Tuple[str, ...]:
  """The class names of root/classes.txt, in label order (`read_class_file`)."""
  return read_class_file(os.path.join(root, CLASSES))


def read_class_file(path: str) -> Tuple[str, ...]:
  """The class names of a classes.txt, in label order; empty or repeated names are refused."""
  if not storage.is_file(path):
    raise DataError(
        f'{path}: not found; write one class name per line, in label order (line 1 is label 0)')
  lines = [line.strip() for line in storage.read_text(path).splitlines()]
  while lines and not lines[-1]:
    lines.pop()
  first: Dict[str, int] = {}
  for number, name in enumerate(lines, 1):
    if not name:
      raise DataError(f'{path}:{number}: empty class name; every line up to the last names a class '
                      f'(label {number - 1})')
    if normalised(name) in first:
      raise DataError(
          f'{path}:{number}: class name {name!r} repeats line {first[normalised(name)]}; '
          'each class needs its own name')
    first[normalised(name)] = number
  if not lines:
    raise DataError(f'{path}: no class names')
  if len(lines) > IGNORE_INDEX:
    raise DataError(
        f'{path}: {len(lines)} classes; at most {IGNORE_INDEX} fit 8-bit labels ({IGNORE_INDEX} = '
        f'ignore)'
    )
  return tuple(lines)


def walk(folder: str) -> List[str]:
  """Every file under `folder` (dot-files aside), as sorted '/'-separated relative paths."""
  out = []
  for rel, dirs, names in storage.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith('.')]
    out += [f'{rel}/{n}' if rel else n for n in names if not n.startswith('.')]
  return sorted(out)


def stems(root: str, folder: str, extensions) -> Dict[str, str]:
  """{path without extension: path} of the files under root/folder, all of whose extensions must
  be in `extensions`; two files of one stem (a.jpg and a.png) are refused."""
  out: Dict[str, str] = {}
  for rel in walk(os.path.join(root, folder)):
    stem, ext = os.path.splitext(rel)
    path = os.path.join(root, folder, rel)
    if ext.lower() not in extensions:
      if folder.startswith('labels'):
        raise DataError(
            f'{path}: not a PNG; labels are index PNGs at their image\'s path with the extension '
            f'.png'
        )
      raise DataError(
          f'{path}: not an image file ({", ".join(extensions)}); move it out of {folder}/')
    if stem in out:
      raise DataError(
          f'{path} and {os.path.join(root, folder, out[stem])}: two files of one name; keep one')
    out[stem] = rel
  return out


def split_pairs(root: str, split: str) -> Tuple[List[Entry], List[Entry]]:
  """(images with a label, images without) of images/<split>/, paths relative to root."""
  image_dir = os.path.join(root, 'images', split)
  if not storage.is_dir(image_dir):
    raise DataError(f'{image_dir}: folder not found (the {split} images go there)')
  images = stems(root, f'images/{split}', files.IMAGE_EXTENSIONS)
  if not images:
    raise DataError(f'{image_dir}: no images')
  labels = stems(root, f'labels/{split}',
                 ('.png',)) if storage.is_dir(os.path.join(root, 'labels', split)) else {}
  for stem, rel in labels.items():
    if stem not in images:
      raise DataError(f'{os.path.join(root, "labels", split, rel)}: a label with no image '
                      f'(no images/{split}/{stem}.*); remove it or add its image')
  labeled = [(f'images/{split}/{rel}', f'labels/{split}/{labels[stem]}')
             for stem, rel in images.items()
             if stem in labels]
  unlabeled = [(f'images/{split}/{rel}', None) for stem, rel in images.items() if stem not in labels
              ]
  return labeled, unlabeled


def read_labeled_list(root: str, labeled: List[Entry]) -> List[Entry]:
  """The entries of splits/labeled.txt (image paths relative to images/train/), each labeled."""
  path = os.path.join(root, LABELED_LIST)
  by_image = {image[len('images/train/'):]: (image, label) for image, label in labeled}
  out = []
  for number, line in enumerate(storage.read_text(path).splitlines(), 1):
    rel = line.strip().replace(os.sep, '/')
    if not rel:
      continue
    if rel not in by_image:
      exists = storage.is_file(os.path.join(root, 'images', 'train', rel))
      raise DataError(f'{path}:{number}: {rel} ' + ('has no label in labels/train/' if exists
                                                     else 'is not an image under images/train/'))
    out.append(by_image[rel])
  if not out:
    raise DataError(f'{path}: lists no image')
  return out


def make_sources(root: str, num_classes: int) -> Dict[str, files.FileSource]:
  """{'labeled', 'unlabeled', 'val'} sources of the folder at `root` with `num_classes` classes."""
  if not root or not storage.is_dir(root):
    raise DataError(f'data.root={root!r}: dataset folder not found (set --config.data.root)')
  names = read_classes(root)
  if len(names) != num_classes:
    raise DataError(
        f'{os.path.join(root, CLASSES)}: {len(names)} classes but data.num_classes={num_classes} '
        '(leave it 0 to take the file\'s)')
  labeled, unlabeled = split_pairs(root, 'train')
  if storage.is_file(os.path.join(root, LABELED_LIST)):
    chosen = read_labeled_list(root, labeled)
    taken = {image for image, _ in chosen}
    unlabeled = sorted(unlabeled + [(image, None) for image, _ in labeled if image not in taken])
    labeled = chosen
  if not labeled:
    raise DataError(f'{os.path.join(root, "labels", "train")}: no training image has a label')
  val, unlabeled_val = split_pairs(root, 'val')
  if unlabeled_val:
    raise DataError(f'{os.path.join(root, unlabeled_val[0][0])}: a val image without a label '
                    f'(labels/val/...png); {len(unlabeled_val)} such image(s)')
  return dict(labeled=files.FileSource(root, labeled, num_classes),
              unlabeled=files.FileSource(root, unlabeled, num_classes, with_labels=False),
              val=files.FileSource(root, val, num_classes))
