"""Open-vocabulary inference: class names given at inference (`inference.class_names`).

HVL's class-level queries are made from text (HTQG) and each carries its fixed class, so a
network trained on K classes can query any names: their text queries (frozen E_T with the
learned prompt, then the level MLPs), their zero-shot relevance s_k (E_I^0 against the fixed
template), and the pixel's class from `semantic.open_vocabulary_logits`, which scores a new class by
its own queries' objectness and a named training class as closed-set inference does. The design
and what the instance queries do are in docs/method.md ("Open-vocabulary inference").

`build` makes that network (same parameters as the trained one), `seen_classes` ties each name
to a training class, `split_miou` reports the seen and the unseen classes apart, `Relabelled`
puts the closed-set predictions in the names' label order (the closed-set baseline on the same
images).
"""
from typing import NamedTuple, Optional, Sequence

import numpy as np

from hvl_jax.data import datasets
from hvl_jax.data import folder
from hvl_jax.data import synthetic
from hvl_jax.inference import predictor as predictor_lib
from hvl_jax.models import hvl
from hvl_jax.models.backbones import clip_weights


def check_names(names: Sequence[str]):
  """inference.class_names: non-empty, distinct strings."""
  if not all(isinstance(n, str) and n.strip() for n in names):
    raise ValueError(f'inference.class_names must be non-empty strings, got {tuple(names)!r}')
  seen = set()
  for n in names:
    if folder.normalised(n) in seen:
      raise ValueError(f'inference.class_names names {n!r} twice')
    seen.add(folder.normalised(n))


def seen_classes(names: Sequence[str], training_names: Sequence[str]) -> np.ndarray:
  """(K',) int32: the training class of each name (the same words, case aside), -1 for a new
  class."""
  index = {folder.normalised(n): k for k, n in enumerate(training_names)}
  return np.asarray([index.get(folder.normalised(n), -1) for n in names], np.int32)


class OpenVocabulary(NamedTuple):
  """config: the config with data.num_classes and data.background_classes of the names (for
  their data and presence scoring); model: the network querying the names; names (K',);
  seen (K',) ints (`seen_classes`)."""
  config: object
  model: hvl.HVL
  names: tuple
  seen: np.ndarray


def build(config, clip: Optional[clip_weights.CLIP] = None) -> OpenVocabulary:
  """The network of `config` querying inference.class_names; it takes the trained parameters."""
  names = tuple(config.inference.class_names)
  check_names(names)
  training = datasets.class_names(config)
  seen = seen_classes(names, training)
  background = {folder.normalised(training[k]) for k in config.data.background_classes}
  named = config.copy_and_resolve_references()
  with named.unlocked():
    named.data.background_classes = tuple(
        j for j, n in enumerate(names) if folder.normalised(n) in background)
  model, _ = hvl.build_model(named, names, clip, open_vocabulary=True)  # its head: data.num_classes
  if model.cfg.queries != 'htqg':
    raise ValueError(
        "inference.class_names needs model.queries='htqg': random queries carry no class name")
  with named.unlocked():
    named.data.num_classes = len(names)
  return OpenVocabulary(named, model, names, seen)


def renamed_labels(config, names: Sequence[str]) -> list:
  """Lines naming each synthetic label that a name scores under another name ('star' against the
  world's squares): evaluation reads label j as names[j]. Empty for other data."""
  if config.data.name != 'synthetic':
    return []
  return [f'inference.class_names[{j}]={n!r} is scored against the synthetic label {j} '
          f'({synthetic.CLASS_NAMES[j]})' for j, n in enumerate(names)
          if j < len(synthetic.CLASS_NAMES) and folder.normalised(n) != synthetic.CLASS_NAMES[j]]


def split_miou(per_class: np.ndarray, seen: np.ndarray) -> dict:
  """{'miou_seen', 'miou_unseen'}: mean IoU (NaN classes left out, None if none) over the named
  training classes and over the new ones; per_class (K',) IoU."""
  def mean(mask):
    v = np.asarray(per_class, np.float64)[mask]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
  return dict(miou_seen=mean(seen >= 0), miou_unseen=mean(seen < 0))


def unnamed_training_classes(seen: np.ndarray, num_training: int) -> list:
  """The training classes that no name is."""
  return sorted(set(range(num_training)) - set(seen[seen >= 0].tolist()))


class Relabelled:
  """A closed-set predictor's class maps in the names' label order (a predictor for `Evaluator`):
  training class seen[j] becomes j; every training class must be named."""

  def __init__(self, predictor: predictor_lib.Predictor, seen: np.ndarray):
    k = predictor.num_classes
    missing = unnamed_training_classes(seen, k)
    if missing:
      raise ValueError(
          f'inference.class_names leaves out training classes {missing}: no closed-set '
          'baseline on the same labels')
    self.predictor, self.seen = predictor, seen
    self.table = np.zeros(k, np.int32)
    self.table[seen[seen >= 0]] = np.flatnonzero(seen >= 0)

  def prepare(self, params):
    return self.predictor.prepare(params)

  def describe(self) -> dict:
    return self.predictor.describe()

  def predict(self, prepared, image: np.ndarray) -> predictor_lib.Prediction:
    pred = self.predictor.predict(prepared, image)
    present = None if pred.present is None else np.where(self.seen >= 0, pred.present[self.seen],
                                                         False)
    probabilities = np.where(self.seen >= 0, pred.probabilities[..., np.maximum(self.seen, 0)], 0)
    return predictor_lib.Prediction(self.table[pred.classes], present,
                                    probabilities.astype(np.float32))
