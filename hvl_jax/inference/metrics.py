"""Segmentation metrics: confusion matrix and mean IoU (on the host: class maps of every size
come back from the predictor, and a device version would compile once per image size)."""
from typing import Tuple

import numpy as np

from hvl_jax.common.constants import IGNORE_INDEX


def confusion_matrix(pred, label, num_classes: int) -> np.ndarray:
  """(K, K) int64 counts, rows = ground truth, columns = prediction; ignore pixels dropped.

  pred, label: integer arrays of the same shape.
  """
  label = np.asarray(label).astype(np.int64).ravel()
  pred = np.asarray(pred).astype(np.int64).ravel()
  valid = (label != IGNORE_INDEX) & (label >= 0) & (label < num_classes)
  counts = np.bincount(label[valid] * num_classes + pred[valid],
                       minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


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
