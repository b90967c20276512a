"""Dataset readers: Pascal VOC (+SBD), COCO-81, ADE20K, Cityscapes, a user's folder, TFDS and the
synthetic set.

Every reader is a random-access source of records {'image' (H, W, 3) uint8 RGB,
'label' (H, W) uint8 with 255 = ignore (absent for image-only lines), 'name'}.
Bad input raises `DataError` naming the file and the problem; nothing is skipped.
Split lists: `<splits_dir>/<folder>/<split>/{labeled,unlabeled}.txt` and
`<splits_dir>/<folder>/val.txt`, one `image_path [label_path]` per line relative to the root.
A user's folder (data.name='folder') is laid out as `folder` describes; its class names, class
count and background class come from the folder (`resolved`). Files are read as `files` says.
"""
import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from hvl_jax.common import storage
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.common.errors import DataError
from hvl_jax.data import files
from hvl_jax.data import folder
from hvl_jax.data import synthetic

IGNORE = IGNORE_INDEX
SHIPPED_SPLITS = os.path.join(os.path.dirname(__file__), 'splits')


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
  remap: Callable[[np.ndarray], np.ndarray] = files.identity_labels
  unlabeled_from_dir: str = ''   # COCO: unlabeled = every image here not in labeled.txt


SPECS: Dict[str, DatasetSpec] = {
    'voc': DatasetSpec('pascal', 'pascal', 21),
    'coco': DatasetSpec('coco', 'coco', 81, unlabeled_from_dir='train2017'),
    'ade': DatasetSpec('ade', 'ade', 150, ade_labels),
    'cityscapes': DatasetSpec('cityscapes', 'cityscapes', 19),
}


def spec(name: str) -> DatasetSpec:
  if name not in SPECS:
    raise ValueError(
        f'unknown dataset {name!r}; valid: {sorted(SPECS) + ["folder", "synthetic", "tfds"]}')
  return SPECS[name]


def splits_dir(config) -> str:
  return config.data.splits_dir or SHIPPED_SPLITS


def class_names(config) -> Tuple[str, ...]:
  """Class names in label order for config.data.name."""
  k = config.data.num_classes
  if config.data.class_names:
    if len(config.data.class_names) != k:
      raise DataError(
          f'data.class_names has {len(config.data.class_names)} names, data.num_classes={k}')
    return tuple(config.data.class_names)
  if config.data.name == 'synthetic':
    return synthetic.CLASS_NAMES[:k]
  if config.data.name == 'tfds':
    raise DataError('data.name=tfds needs data.class_names (the class names in label order)')
  if config.data.name == 'folder':
    return resolved(config).data.class_names
  path = os.path.join(splits_dir(config), 'classes.json')
  try:
    names = json.loads(storage.read_text(path))[spec(config.data.name).classes_key]
  except (OSError, KeyError, json.JSONDecodeError) as e:
    raise DataError(f'{path}: cannot read class names for {config.data.name!r} ({e})') from e
  if len(names) != k:
    raise DataError(
        f'{path}: {len(names)} class names for {config.data.name!r} but data.num_classes={k}')
  return tuple(names)


def resolved(config):
  """`config` with what a folder dataset derives from its folder: data.class_names (classes.txt),
  data.num_classes and data.background_classes (the class named data.background_name, if any).
  Other datasets, and a config resolved before, come back as they are."""
  data = config.data
  if data.name != 'folder' or data.class_names:
    return config
  if not data.root or not storage.is_dir(data.root):
    raise DataError(
        f'data.root={data.root!r}: dataset folder not found (set --config.data.root to the folder '
        f'holding {folder.CLASSES}, images/ and labels/)')
  names = folder.read_classes(data.root)
  if data.num_classes and data.num_classes != len(names):
    raise DataError(
        f'{os.path.join(data.root, folder.CLASSES)}: {len(names)} classes but data.num_classes='
        f'{data.num_classes} (leave it 0 to take the file\'s)')
  background = folder.normalised(data.background_name)
  out = config.copy_and_resolve_references()
  with out.unlocked():
    out.data.class_names = names
    out.data.num_classes = len(names)
    out.data.background_classes = tuple(
        k for k, n in enumerate(names) if background and folder.normalised(n) == background)
  return out


def read_split_list(path: str, need_labels: bool) -> List[Tuple[str, Optional[str]]]:
  """Lines `image [label]` -> [(image, label or None)]."""
  if not storage.exists(path):
    raise DataError(f'{path}: split list not found')
  entries = []
  for lineno, line in enumerate(storage.read_text(path).splitlines(), 1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) > 2 or (need_labels and len(parts) != 2):
      raise DataError(f'{path}:{lineno}: expected "image_path label_path", got {line.strip()!r}')
    entries.append((parts[0], parts[1] if len(parts) == 2 else None))
  if not entries:
    raise DataError(f'{path}: the split list is empty')
  return entries


class TFDSSource:
  """Random-access TFDS split through `tfds.data_source` (ArrayRecord files, no TensorFlow).

  Any TFDS dataset with an image feature (H, W, 3) uint8 and a segmentation-mask feature
  (H, W[, 1]) of class ids (255 = ignore) works; `image_key` / `label_key` name them.
  """

  def __init__(self, name: str, split: str, data_dir: str, num_classes: int,
               image_key: str = 'image', label_key: str = 'segmentation_mask',
               with_labels: bool = True):
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
      raise DataError(
          f'{where}: feature {self.image_key!r} is {image.dtype} {image.shape}, expected (H, W, 3) '
          f'uint8'
      )
    record = dict(image=image, name=f'{index:08d}')
    if self.with_labels:
      label = np.asarray(example[self.label_key])
      label = label[..., 0] if label.ndim == 3 and label.shape[-1] == 1 else label
      record['label'] = files.check_label(label, self.num_classes, image.shape, where)
    return record

  def label_fingerprint(self) -> str:
    """TFDS versions are immutable: the dataset, split and size name the content."""
    return f'{self.where} {len(self)}'


def make_sources(config) -> Dict[str, object]:
  """{'labeled', 'unlabeled', 'val'} sources for config.data (unlabeled may be empty)."""
  data = config.data
  if data.name == 'tfds':
    t = data.tfds
    mk = lambda split, labels: TFDSSource(t.name, split, t.data_dir, data.num_classes, t.image_key,
                                          t.label_key, labels)
    return dict(labeled=mk(t.labeled_split, True), unlabeled=mk(t.unlabeled_split, False),
                val=mk(t.val_split, True))
  if data.name == 'folder':
    return folder.make_sources(data.root, resolved(config).data.num_classes)
  if data.name == 'synthetic':
    mk = lambda split, n, scenes=None: synthetic.SyntheticSource(
        split, n, data.synthetic_size, data.num_classes, data.synthetic_seed, scenes)
    also = sorted(set(data.synthetic_also_labeled))
    if also and not 0 <= also[0] <= also[-1] < data.synthetic_unlabeled:
      raise DataError(
          f'data.synthetic_also_labeled: indices must be in [0, data.synthetic_unlabeled='
          f'{data.synthetic_unlabeled}), got '
          f'{[i for i in also if not 0 <= i < data.synthetic_unlabeled]}'
      )
    labeled = [('labeled', i) for i in range(data.synthetic_labeled)
              ] + [('unlabeled', i) for i in also]
    taken = set(also)
    pool = [('unlabeled', i) for i in range(data.synthetic_unlabeled) if i not in taken]
    return dict(labeled=mk('labeled', 0, labeled), unlabeled=mk('unlabeled', 0, pool),
                val=mk('val', data.synthetic_val))
  s = spec(data.name)
  if not data.root or not storage.is_dir(data.root):
    raise DataError(
        f'data.root={data.root!r}: dataset root directory not found (set --config.data.root)')
  if s.num_classes != data.num_classes:
    raise DataError(
        f'data.num_classes={data.num_classes} but {data.name} has {s.num_classes} classes')
  split_dir = os.path.join(splits_dir(config), s.folder, data.split)
  labeled = read_split_list(os.path.join(split_dir, 'labeled.txt'), need_labels=True)
  unlabeled_list = os.path.join(split_dir, 'unlabeled.txt')
  if storage.exists(unlabeled_list):
    unlabeled = read_split_list(unlabeled_list, need_labels=False)
  elif s.unlabeled_from_dir:
    unlabeled = list_unlabeled_images(data.root, s.unlabeled_from_dir, labeled)
  else:
    raise DataError(f'{unlabeled_list}: split list not found')
  val = read_split_list(os.path.join(splits_dir(config), s.folder, 'val.txt'), need_labels=True)
  k = data.num_classes
  return dict(labeled=files.FileSource(data.root, labeled, k, s.remap),
              unlabeled=files.FileSource(data.root, unlabeled, k, s.remap, with_labels=False),
              val=files.FileSource(data.root, val, k, s.remap))


def list_unlabeled_images(root: str, folder: str, labeled) -> List[Tuple[str, None]]:
  """COCO: every image of root/folder that is not in the labeled list."""
  path = os.path.join(root, folder)
  if not storage.is_dir(path):
    raise DataError(f'{path}: image folder not found (needed for the unlabeled list)')
  taken = {img for img, _ in labeled}
  entries = [(f'{folder}/{n}', None) for n in storage.listdir(path)
             if n.lower().endswith(('.jpg', '.jpeg', '.png')) and f'{folder}/{n}' not in taken]
  if not entries:
    raise DataError(f'{path}: no unlabeled images left after removing the labeled ones')
  return entries
