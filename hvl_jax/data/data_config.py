"""`DataConfig`: the `data` subtree, every field with its default (Pascal VOC's recipe, the paper's
section 4.1), and the subtrees of a TFDS dataset and of the strong views."""
import dataclasses
from typing import Tuple

from hvl_jax.data.device_augment import StrongViewConfig


@dataclasses.dataclass(frozen=True)
class TFDSConfig:
  """`data.tfds`: any TFDS dataset with an image and a segmentation-mask feature
  (data.name='tfds')."""
  name: str = ''
  data_dir: str = ''
  labeled_split: str = 'train[:92]'
  unlabeled_split: str = 'train[92:]'
  val_split: str = 'validation'
  image_key: str = 'image'
  label_key: str = 'segmentation_mask'


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """`data`: what is read, how it is cropped and batched.

  name: voc | coco | ade | cityscapes | folder (your own) | synthetic | tfds; class_names: an
  override of the class names (required for tfds; a folder has classes.txt's); root: the dataset
  root; splits_dir: the folder holding <dataset>/<split>/{labeled,unlabeled}.txt ('' = the copy
  shipped in hvl_jax/data/splits); background_classes: the classes whose relevance s_k is always
  1; background_name: a folder's class of this name (if any) is its background class.

  Training rescale (SemiVL): mmseg's keep-ratio Resize(img_scale, ratio_range=scale_range) where
  img_scale is set (VOC, ADE20K), else the native size times a ratio in scale_range. The batches
  are global, per step. Rare-class sampling (DAFormer): an image is drawn for class c if it holds
  more than rcs_min_pixels of it; its crop is re-drawn (up to 10 times) until it keeps
  rcs_min_pixels * rcs_min_crop_ratio.

  The synthetic set (name='synthetic'): its scenes are drawn from synthetic_seed, not from the
  run's seed, so that every training seed sees the same labeled scenes and val set (as an
  official split); the first n labeled scenes are the same for every n. synthetic_also_labeled:
  scenes of the unlabeled pool (indices) labeled too, e.g. tools.suggest_labels' picks: they
  join the labeled set and leave the pool.
  """
  name: str = 'voc'
  class_names: Tuple[str, ...] = ()
  root: str = ''
  splits_dir: str = ''
  split: str = '92'
  num_classes: int = 21
  background_classes: Tuple[int, ...] = (0,)
  background_name: str = 'background'
  crop_size: int = 512
  img_scale: Tuple[int, ...] = (2048, 512)
  scale_range: Tuple[float, float] = (0.5, 2.0)
  labeled_batch: int = 8
  unlabeled_batch: int = 8
  num_workers: int = 4
  prefetch: int = 2
  rare_class_sampling: bool = True
  rcs_temperature: float = 0.01
  rcs_min_pixels: int = 3000
  rcs_min_crop_ratio: float = 0.5
  strong_view: StrongViewConfig = StrongViewConfig()
  synthetic_seed: int = 0
  synthetic_size: int = 64
  synthetic_labeled: int = 16
  synthetic_unlabeled: int = 128
  synthetic_also_labeled: Tuple[int, ...] = ()
  synthetic_val: int = 32
  tfds: TFDSConfig = TFDSConfig()
