"""Dataset readers: Pascal VOC (+SBD), COCO-81, ADE20K, Cityscapes and the synthetic set.

Every reader is a random-access source of records {'image' (H, W, 3) uint8 RGB,
'label' (H, W) uint8 with 255 = ignore (absent for image-only lines), 'name'}.
Bad input raises `DataError` naming the file and the problem; nothing is skipped.
Split lists: `<splits_dir>/<folder>/<split>/{labeled,unlabeled}.txt` and
`<splits_dir>/<folder>/val.txt`, one `image_path [label_path]` per line relative to the root.
"""
import dataclasses
import hashlib
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from hvl_jax.constants import IGNORE_INDEX
from hvl_jax.data import synthetic

IGNORE = IGNORE_INDEX
SHIPPED_SPLITS = os.path.join(os.path.dirname(__file__), 'splits')


class DataError(ValueError):
  """Bad dataset input; the message names the file and what is wrong."""


def identity_labels(label: np.ndarray) -> np.ndarray:
  return label


def ade_labels(label: np.ndarray) -> np.ndarray:
  """ADE20K: 0 (other) -> ignore, k -> k - 1."""
  out = label.astype(np.int32) - 1
  out[label == 0] = IGNORE
  return out.astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  folder: str                 # under splits_dir
  classes_key: str            # in classes.json
  num_classes: int
  remap: Callable[[np.ndarray], np.ndarray] = identity_labels
  unlabeled_from_dir: str = ''   # COCO: unlabeled = every image here not in labeled.txt


SPECS: Dict[str, DatasetSpec] = {
    'voc': DatasetSpec('pascal', 'pascal', 21),
    'coco': DatasetSpec('coco', 'coco', 81, unlabeled_from_dir='train2017'),
    'ade': DatasetSpec('ade', 'ade', 150, ade_labels),
    'cityscapes': DatasetSpec('cityscapes', 'cityscapes', 19),
}


def spec(name: str) -> DatasetSpec:
  if name not in SPECS:
    raise ValueError(f'unknown dataset {name!r}; valid: {sorted(SPECS) + ["synthetic", "tfds"]}')
  return SPECS[name]


def splits_dir(config) -> str:
  return config.data.splits_dir or SHIPPED_SPLITS


def class_names(config) -> Tuple[str, ...]:
  """Class names in label order for config.data.name."""
  k = config.data.num_classes
  if config.data.class_names:
    if len(config.data.class_names) != k:
      raise DataError(f'data.class_names has {len(config.data.class_names)} names, data.num_classes={k}')
    return tuple(config.data.class_names)
  if config.data.name == 'synthetic':
    return synthetic.CLASS_NAMES[:k]
  if config.data.name == 'tfds':
    raise DataError('data.name=tfds needs data.class_names (the class names in label order)')
  path = os.path.join(splits_dir(config), 'classes.json')
  try:
    with open(path) as f:
      names = json.load(f)[spec(config.data.name).classes_key]
  except (OSError, KeyError, json.JSONDecodeError) as e:
    raise DataError(f'{path}: cannot read class names for {config.data.name!r} ({e})') from e
  if len(names) != k:
    raise DataError(f'{path}: {len(names)} class names for {config.data.name!r} but data.num_classes={k}')
  return tuple(names)


def read_split_list(path: str, need_labels: bool) -> List[Tuple[str, Optional[str]]]:
  """Lines `image [label]` -> [(image, label or None)]."""
  if not os.path.exists(path):
    raise DataError(f'{path}: split list not found')
  entries = []
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) > 2 or (need_labels and len(parts) != 2):
        raise DataError(f'{path}:{lineno}: expected "image_path label_path", got {line.strip()!r}')
      entries.append((parts[0], parts[1] if len(parts) == 2 else None))
  if not entries:
    raise DataError(f'{path}: the split list is empty')
  return entries


def load_image(path: str) -> np.ndarray:
  if not os.path.exists(path):
    raise DataError(f'{path}: image file not found')
  try:
    with Image.open(path) as im:
      im.load()        # raises on truncated files
      return np.asarray(im.convert('RGB'))
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(f'{path}: unreadable or truncated image ({e})') from e


def check_label(label: np.ndarray, num_classes: int, image_shape, where: str) -> np.ndarray:
  """Validates a remapped (H, W) label against its image; raises DataError naming `where`."""
  if label.shape != tuple(image_shape[:2]):
    raise DataError(f'{where}: label size {label.shape[1]}x{label.shape[0]} differs from its image '
                    f'{image_shape[1]}x{image_shape[0]}')
  bad = (label >= num_classes) & (label != IGNORE)
  if bad.any():
    values = sorted(set(np.unique(label[bad]).tolist()))[:8]
    raise DataError(f'{where}: label values {values} outside [0, {num_classes}) and not {IGNORE}')
  return label.astype(np.uint8)


def load_label(path: str, num_classes: int, remap, image_shape) -> np.ndarray:
  if not os.path.exists(path):
    raise DataError(f'{path}: label file not found')
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in ('RGB', 'RGBA'):
        raise DataError(f'{path}: label is an {im.mode} colour image; expected an index PNG '
                        '(one class id per pixel, 255 = ignore)')
      label = np.asarray(im)
  except (OSError, SyntaxError) as e:
    raise DataError(f'{path}: unreadable or truncated label ({e})') from e
  return check_label(remap(label), num_classes, image_shape, path)


class FileSource:
  """Random-access reader of one split list under a dataset root."""

  def __init__(self, root: str, entries: Sequence[Tuple[str, Optional[str]]], num_classes: int,
               remap=identity_labels, with_labels: bool = True):
    self.root, self.entries, self.num_classes, self.remap = root, list(entries), num_classes, remap
    self.with_labels = with_labels

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    image_rel, label_rel = self.entries[index]
    image = load_image(os.path.join(self.root, image_rel))
    record = dict(image=image, name=os.path.splitext(os.path.basename(image_rel))[0])
    if self.with_labels:
      record['label'] = load_label(os.path.join(self.root, label_rel), self.num_classes, self.remap, image.shape)
    return record

  def label_fingerprint(self) -> str:
    """Digest of the label files' paths and bytes (the rare-class statistics' cache key)."""
    h = hashlib.sha256()
    for _, label_rel in self.entries:
      path = os.path.join(self.root, label_rel)
      try:
        with open(path, 'rb') as f:
          h.update(label_rel.encode() + b'\0' + hashlib.sha256(f.read()).digest())
      except OSError as e:
        raise DataError(f'{path}: cannot read label file ({e})') from e
    return h.hexdigest()


class TFDSSource:
  """Random-access TFDS split through `tfds.data_source` (ArrayRecord files, no TensorFlow).

  Any TFDS dataset with an image feature (H, W, 3) uint8 and a segmentation-mask feature
  (H, W[, 1]) of class ids (255 = ignore) works; `image_key` / `label_key` name them.
  """

  def __init__(self, name: str, split: str, data_dir: str, num_classes: int, image_key: str = 'image',
               label_key: str = 'segmentation_mask', with_labels: bool = True):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.where = f'tfds:{name}[{split}] in {data_dir or "the default data_dir"}'
    try:
      self.source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'{self.where}: cannot open ({type(e).__name__}: {e})') from e
    self.num_classes, self.image_key, self.label_key = num_classes, image_key, label_key
    self.with_labels = with_labels

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    example = self.source[index]
    where = f'{self.where} example {index}'
    for key in (self.image_key,) + ((self.label_key,) if self.with_labels else ()):
      if key not in example:
        raise DataError(f'{where}: no feature {key!r}; features: {sorted(example)}')
    image = np.asarray(example[self.image_key])
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise DataError(f'{where}: feature {self.image_key!r} is {image.dtype} {image.shape}, expected (H, W, 3) uint8')
    record = dict(image=image, name=f'{index:08d}')
    if self.with_labels:
      label = np.asarray(example[self.label_key])
      label = label[..., 0] if label.ndim == 3 and label.shape[-1] == 1 else label
      record['label'] = check_label(label, self.num_classes, image.shape, where)
    return record

  def label_fingerprint(self) -> str:
    """TFDS versions are immutable: the dataset, split and size name the content."""
    return f'{self.where} {len(self)}'


def make_sources(config) -> Dict[str, object]:
  """{'labeled', 'unlabeled', 'val'} sources for config.data (unlabeled may be empty)."""
  d = config.data
  if d.name == 'tfds':
    t = d.tfds
    mk = lambda split, labels: TFDSSource(t.name, split, t.data_dir, d.num_classes, t.image_key, t.label_key,
                                          labels)
    return dict(labeled=mk(t.labeled_split, True), unlabeled=mk(t.unlabeled_split, False),
                val=mk(t.val_split, True))
  if d.name == 'synthetic':
    mk = lambda split, n: synthetic.SyntheticSource(split, n, d.synthetic_size, d.num_classes, config.seed)
    return dict(labeled=mk('labeled', d.synthetic_labeled), unlabeled=mk('unlabeled', d.synthetic_unlabeled),
                val=mk('val', d.synthetic_val))
  s = spec(d.name)
  if not d.root or not os.path.isdir(d.root):
    raise DataError(f'data.root={d.root!r}: dataset root directory not found (set --config.data.root)')
  if s.num_classes != d.num_classes:
    raise DataError(f'data.num_classes={d.num_classes} but {d.name} has {s.num_classes} classes')
  split_dir = os.path.join(splits_dir(config), s.folder, d.split)
  labeled = read_split_list(os.path.join(split_dir, 'labeled.txt'), need_labels=True)
  unlabeled_list = os.path.join(split_dir, 'unlabeled.txt')
  if os.path.exists(unlabeled_list):
    unlabeled = read_split_list(unlabeled_list, need_labels=False)
  elif s.unlabeled_from_dir:
    unlabeled = list_unlabeled_images(d.root, s.unlabeled_from_dir, labeled)
  else:
    raise DataError(f'{unlabeled_list}: split list not found')
  val = read_split_list(os.path.join(splits_dir(config), s.folder, 'val.txt'), need_labels=True)
  k = d.num_classes
  return dict(labeled=FileSource(d.root, labeled, k, s.remap),
              unlabeled=FileSource(d.root, unlabeled, k, s.remap, with_labels=False),
              val=FileSource(d.root, val, k, s.remap))


def list_unlabeled_images(root: str, folder: str, labeled) -> List[Tuple[str, None]]:
  """COCO: every image of root/folder that is not in the labeled list."""
  path = os.path.join(root, folder)
  if not os.path.isdir(path):
    raise DataError(f'{path}: image folder not found (needed for the unlabeled list)')
  taken = {img for img, _ in labeled}
  entries = [(f'{folder}/{n}', None) for n in sorted(os.listdir(path))
             if n.lower().endswith(('.jpg', '.jpeg', '.png')) and f'{folder}/{n}' not in taken]
  if not entries:
    raise DataError(f'{path}: no unlabeled images left after removing the labeled ones')
  return entries
