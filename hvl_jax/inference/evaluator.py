"""Evaluation: a predictor's class maps on a source -> confusion matrix -> mIoU.

Writes `<workdir>/eval_<tag>.json` (key `miou`, a fraction, plus per-class IoU, the inference
geometry under `inference`, and, where the network gates its class queries, the image-level presence
precision and recall of the gating against the labels: `relevance_precision`, `relevance_recall`,
background classes left out) and a readable per-class table `<workdir>/eval_<tag>.txt`. With
`inference.class_names` (open-vocabulary inference, hvl_jax/inference/open_vocabulary.py) the
classes are the names, and `miou_seen` / `miou_unseen` split them into the named training classes
and the new ones (`evaluate_open_vocabulary`). `Evaluations` runs the entries of a config's `evals`.
"""
import dataclasses
import json
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import jax
from jax.experimental import multihost_utils
import numpy as np

from hvl_jax.common import config_tree
from hvl_jax.common import progress as progress_lib
from hvl_jax.common import state as state_lib
from hvl_jax.common import storage
from hvl_jax.common.constants import IGNORE_INDEX
from hvl_jax.data import datasets
from hvl_jax.inference import metrics
from hvl_jax.inference import open_vocabulary
from hvl_jax.inference import predictor as predictor_lib
from hvl_jax.models import hvl


def process_share(n: int):
  """The indices of the n images that this process evaluates (every process_count-th)."""
  return range(jax.process_index(), n, jax.process_count())


def summed_over_processes(counts: np.ndarray) -> np.ndarray:
  """An array of counts (a confusion matrix) of every process, summed (identity with one
  process)."""
  if jax.process_count() == 1:
    return counts
  return np.asarray(multihost_utils.process_allgather(counts)).sum(0)


def presence_counts(present: np.ndarray, label: np.ndarray, num_classes: int, skip) -> np.ndarray:
  """(true positives, false positives, false negatives) of the predicted presence `present` (K,)
  against the classes in `label`, classes in `skip` (the background, always kept) left out."""
  truth = np.zeros(num_classes, bool)
  held = np.unique(label[label != IGNORE_INDEX])
  truth[held[held < num_classes]] = True
  scored = np.ones(num_classes, bool)
  scored[list(skip)] = False
  p, t = present & scored, truth & scored
  return np.asarray([(p & t).sum(), (p & ~t).sum(), (~p & t).sum()], np.int64)


def ratio(a, b):
  return float(a / b) if b else None


class Progress:
  """A console line for process 0: images done, images/s, ETA. The first image's time holds the
  predictor's compilation, so the rate and the ETA count from the end of it."""

  def __init__(self, total: int, every_s: float = 10.0):
    self.total, self.every_s = total, every_s
    self.rate = progress_lib.Rate(total)
    self.last = time.time()

  def update(self, done: int):
    now = time.time()
    self.rate.mark(done)
    if jax.process_index() != 0 or (now - self.last < self.every_s and done not in (1, self.total)):
      return
    self.last = now
    if done == 1:
      print(
          f'eval 1/{self.total} images (compiling and the first image: '
          f'{now - self.rate.started:.1f} s)',
          flush=True)
      return
    print(
        f'eval {done}/{self.total} images, {self.rate.per_second(done):.2f} images/s, ETA '
        f'{self.rate.eta(done)}',
        flush=True)


class Evaluation(NamedTuple):
  """What `Evaluator.run` returns: the results (also written as json) and (image, prediction,
  label) of the first `num_samples` images of process 0 (for TensorBoard)."""
  results: dict
  samples: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]


class Evaluator:
  """mIoU of a parameter set on a source, with a predictor (`predictor_lib.Predictor` or any object
  with `prepare(params)`, `describe()` and `predict(prepared, image) -> predictor_lib.Prediction`).

  Each process evaluates its share of the images (`process_share`); the confusion matrices are
  summed over the processes. `run` also returns (image, prediction, label) of the first
  `num_samples` images. `seen` (K,) ints (open-vocabulary inference,
  `open_vocabulary.seen_classes`) adds `miou_seen` and `miou_unseen`.
  """

  def __init__(self, config, predictor, source, class_names: Sequence[str], num_samples: int = 0,
               seen: Optional[np.ndarray] = None):
    self.config, self.predictor, self.source, self.names = config, predictor, source, list(
        class_names)
    self.num_samples, self.seen = num_samples, seen

  def run(self, params, workdir: Optional[str], tag: str = 'eval', extra: Optional[dict] = None,
          title: str = 'The network') -> Evaluation:
    """Evaluates `params`; `extra` entries are added to the results (and the json). The table
    printed (and written) is headed by `title`: what was evaluated."""
    k = len(self.names)
    data = self.config.data
    conf = np.zeros((k, k), np.int64)
    presence = np.zeros(3, np.int64)       # gating's TP, FP, FN over images and classes
    n = len(self.source)
    samples = []
    prepared = self.predictor.prepare(params)
    share = process_share(n)
    progress = Progress(len(share))
    gated = False
    for done, i in enumerate(share, 1):
      record = self.source[i]
      pred = self.predictor.predict(prepared, record['image'])
      if len(samples) < self.num_samples:
        samples.append((record['image'], pred.classes, record['label']))
      conf += metrics.confusion_matrix(pred.classes, record['label'], k)
      if pred.present is not None:
        gated = True
        presence += presence_counts(pred.present, record['label'], k, data.background_classes)
      progress.update(done)
    conf = summed_over_processes(conf)
    tp, fp, fn = summed_over_processes(presence)
    miou, per_class = metrics.mean_iou(conf)
    results = dict(miou=miou, per_class_iou={n_: (None if np.isnan(v) else float(v))
                                             for n_, v in zip(self.names, per_class)},
                   num_images=n, tag=tag, seconds=round(time.time() - progress.rate.started, 2),
                   inference=self.predictor.describe(),
                   # which class a class's pixels went to: rows the truth, columns the prediction
                   confusion=conf.tolist())
    if gated:
      results.update(relevance_precision=ratio(tp, tp + fp), relevance_recall=ratio(tp, tp + fn))
    if self.seen is not None:
      results.update(open_vocabulary.split_miou(per_class, self.seen))
    results.update(extra or {})
    table = f'{title}: mIoU on {n} {self.source_name()} images (eval_{tag}.json)\n'
    table += format_table(self.names, per_class, miou)
    shown = ((('relevance_precision', 'relevance_recall') if gated else ())
             + (('miou_seen', 'miou_unseen') if self.seen is not None else ()))
    if shown:
      table += '\n' + ' '.join(f'{key} {"n/a" if results[key] is None else f"{results[key]:.3f}"}'
                                for key in shown)
    print(table, flush=True)
    if workdir and jax.process_index() == 0:
      storage.write_text(storage.join(workdir, f'eval_{tag}.json'), json.dumps(results, indent=2))
      storage.write_text(storage.join(workdir, f'eval_{tag}.txt'), table + '\n')
    return Evaluation(results, samples)


  def source_name(self) -> str:
    return f'{self.config.data.name} val'


def format_table(names, per_class, miou) -> str:
  lines = [f'{"class":24s} IoU']
  lines += [
      f'{n:24s} {"  n/a" if np.isnan(v) else f"{100 * v:5.1f}"}' for n, v in zip(names, per_class)
  ]
  lines.append(f'{"mIoU":24s} {100 * miou:5.1f}')
  return '\n'.join(lines)


def evaluate_zero_shot(config, model, source, names, params, workdir: Optional[str],
                       seen: Optional[np.ndarray] = None) -> dict:
  """{'zero_shot_miou': ...}: the frozen CLIP's own dense zero-shot mIoU on the same images and
  classes (`predictor_lib.zero_shot_scores`, written as eval_zero_shot.json; with `seen`, also
  `zero_shot_miou_seen` and `zero_shot_miou_unseen`)."""
  predictor = predictor_lib.Predictor.from_config(config, model, zero_shot_baseline=True)
  results = Evaluator(config, predictor, source, names, seen=seen).run(
      params, workdir, tag='zero_shot',
      title='Baseline, the frozen CLIP alone (dense zero-shot)').results
  return {
      f'zero_shot_{key}': results[key]
      for key in ('miou', 'miou_seen', 'miou_unseen')
      if key in results
  }


def evaluate_open_vocabulary(config, model, clip, params, workdir: Optional[str],
                             zero_shot: bool = False) -> dict:
  """Open-vocabulary evaluation of the trained network (`model`, `params`; `clip` its CLIP) on
  inference.class_names.

  The val split of config.data with len(class_names) classes (label j is class_names[j]; the
  synthetic world draws its first len(class_names) classes). Writes eval_open_vocabulary.json:
  mIoU over all the names, `miou_seen` / `miou_unseen`, and beside them on the same images
  `closed_set_miou_seen` (the network with its training classes, eval_closed_set.json; only when
  every training class is named) and, with `zero_shot`, the frozen CLIP's
  `zero_shot_miou[_seen|_unseen]`.
  """
  ov = open_vocabulary.build(config, clip)
  for line in open_vocabulary.renamed_labels(config, ov.names):
    print(f'Note: {line}', flush=True)
  source = datasets.make_sources(ov.config)['val']
  evaluator = lambda predictor: Evaluator(ov.config, predictor, source, ov.names, seen=ov.seen)
  extra = dict(class_names=list(ov.names), seen_classes=[int(k) for k in ov.seen])
  unnamed = open_vocabulary.unnamed_training_classes(ov.seen, model.cfg.num_classes)
  if unnamed:
    print(f'No closed-set baseline: inference.class_names leaves out training classes {unnamed}',
          flush=True)
  else:
    closed = open_vocabulary.Relabelled(predictor_lib.Predictor.from_config(config, model), ov.seen)
    extra['closed_set_miou_seen'] = evaluator(closed).run(
        params, workdir, tag='closed_set',
        title='The network, its training classes only').results['miou_seen']
  if zero_shot:
    extra.update(evaluate_zero_shot(ov.config, ov.model, source, ov.names, params, workdir,
                                    ov.seen))
  predictor = predictor_lib.Predictor.from_config(ov.config, ov.model, seen=ov.seen)
  return evaluator(predictor).run(
      params, workdir, tag='open_vocabulary', extra=extra,
      title=f'The network, open vocabulary ({len(ov.names)} names)').results


# The kinds of an `evals` entry (configs/base.py), what each scores:
#   miou             the network's closed-set mIoU on the val split, at the end and every
#                    train.eval_every steps (the entry named 'val' keeps the best checkpoint), with
#                    `strips` (image | prediction | truth) of its first images for TensorBoard;
#   zero_shot        the frozen CLIP alone on the val split (dense zero-shot), a baseline;
#   open_vocabulary  the network on inference.class_names, and the frozen CLIP on them too with
#                    `zero_shot` (nothing to run when no names are given).
KINDS = ('miou', 'zero_shot', 'open_vocabulary')


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """One entry of `evals`: its kind (KINDS) and the settings of that kind."""
  kind: str = 'miou'
  strips: int = 0
  zero_shot: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f'evals: kind {self.kind!r} is not one of {KINDS}')


class Evaluations:
  """The `evals` of a config for one network, run by name (in the order of their names, as
  ml_collections keeps them): a caller (the trainer, --mode eval) needs no kind. The entry named
  'val' writes eval_<stage>.json, another miou entry eval_<name>_<stage>.json."""

  def __init__(self, config, model, clip, source, names: Sequence[str]):
    self.config, self.model, self.clip, self.source, self.names = config, model, clip, source, names
    self.specs = {name: config_tree.build(EvalConfig, spec, f'evals.{name}')
                  for name, spec in config.evals.items()}
    periodic = [name for name, spec in self.specs.items() if spec.kind == 'miou']
    predictor = predictor_lib.Predictor.from_config(config, model) if periodic else None
    self.evaluators = {name: Evaluator(config, predictor, source, names,
                                       num_samples=self.specs[name].strips) for name in periodic}

  def periodic(self) -> List[str]:
    """The entries run every train.eval_every steps: 'val' (if there is one) first."""
    return sorted(self.evaluators, key=lambda name: name != 'val')

  def run(self, name: str, params, workdir: Optional[str], stage: str, title: str,
          extra: Optional[dict] = None) -> Optional[Evaluation]:
    """Entry `name` at `stage` ('final', 'step_300', 'eval'); None where it has nothing to run."""
    spec = self.specs[name]
    if spec.kind == 'miou':
      tag = stage if name == 'val' else f'{name}_{stage}'
      return self.evaluators[name].run(params, workdir, tag=tag, extra=extra, title=title)
    if spec.kind == 'zero_shot':
      return Evaluation(evaluate_zero_shot(self.config, self.model, self.source, self.names, params,
                                           workdir), [])
    if not self.config.inference.class_names:
      return None
    return Evaluation(evaluate_open_vocabulary(self.config, self.model, self.clip, params, workdir,
                                               spec.zero_shot), [])

  def run_all(self, params, workdir: Optional[str], stage: str, title: str,
              extra: Optional[dict] = None) -> dict:
    """{name: Evaluation} of every entry that has something to run, in order; `extra` goes into
    the results of the miou entries."""
    done = {}
    for name, spec in self.specs.items():
      out = self.run(name, params, workdir, stage, title, extra if spec.kind == 'miou' else None)
      if out is not None:
        done[name] = out
    return done


def evaluate_checkpoint(config, workdir: str, checkpoint: Optional[str] = None) -> dict:
  """Runs the config's `evals` on `checkpoint` (default: the newest in <workdir>/checkpoints):
  {name: results}."""
  config = datasets.resolved(config)
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params, _ = state_lib.restore_params(config, model, clip, checkpoint or
                                       storage.join(workdir, 'checkpoints'))
  evaluations = Evaluations(config, model, clip, datasets.make_sources(config)['val'], names)
  done = evaluations.run_all(params, workdir, 'eval', title='The trained network')
  return {name: out.results for name, out in done.items()}
