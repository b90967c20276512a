"""Segmentation metrics: confusion matrix (on device) and mean IoU."""
from typing import Tuple

import jax.numpy as jnp
import numpy as np


def confusion_matrix(pred, label, num_classes: int, ignore_index: int = 255):
  """(K, K) int32 counts, rows = ground truth, columns = prediction; ignore pixels dropped.

  pred, label: integer arrays of the same shape.
  """
  label = label.astype(jnp.int32)
  valid = (label != ignore_index) & (label >= 0) & (label < num_classes)
  idx = jnp.where(valid, label * num_classes + pred.astype(jnp.int32), num_classes * num_classes)
  counts = jnp.bincount(idx.ravel(), length=num_classes * num_classes + 1)[:-1]
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def mean_iou(confusion) -> Tuple[float, np.ndarray]:
  """(miou, per_class_iou): IoU_c = TP / (TP + FP + FN); classes with an empty union are NaN
  and excluded from the mean."""
  conf = np.asarray(confusion, np.float64)
  tp = np.diag(conf)
  union = conf.sum(0) + conf.sum(1) - tp
  with np.errstate(invalid='ignore', divide='ignore'):
    iou = np.where(union > 0, tp / union, np.nan)
  miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan')
  return miou, iou
