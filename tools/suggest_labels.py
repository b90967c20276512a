r"""Which photos to label next: the unlabeled pool ranked by the trained network's uncertainty.

  python -m tools.suggest_labels --workdir runs/mine --count 20 [--score entropy|below_threshold]

Each photo of the workdir's unlabeled pool (the config's: a folder dataset's training images
without a label or outside splits/labeled.txt, a split list's unlabeled images, the small world's
unlabeled scenes) is predicted under the evaluation geometry, and scored:
  entropy          the mean over its pixels of the entropy (nats) of the class probabilities;
  below_threshold  the share of its pixels whose top class probability is below the pseudo-label
                   threshold (loss.consistency.conf_threshold): the pixels the unlabeled loss
                   ignores.
The `--count` highest are printed with their scores and written to
`<workdir>/suggested_labels.txt` in `splits/labeled.txt` form (image paths relative to
images/train/ for a folder dataset; for the small world, the scenes' indices in the pool, which
`--config.data.synthetic_also_labeled` takes), and the whole ranking to
`<workdir>/suggested_labels.json` (the page, tools/app.py, shows its top).
"""
import json
import sys
from typing import Callable, Dict, List

from absl import app
from absl import flags
import numpy as np

from hvl_jax.common import storage
from hvl_jax.common.errors import DataError
from hvl_jax.data import datasets
from hvl_jax.data import files
from hvl_jax.inference import segmenter

PICKS, RANKING = 'suggested_labels.txt', 'suggested_labels.json'     # in the workdir
SCORES: Dict[str, str] = {
    'entropy': 'mean pixel entropy (nats)',
    'below_threshold': 'share of pixels below the pseudo-label threshold',
}



def mean_entropy(probabilities: np.ndarray) -> float:
  """Mean over pixels of -sum_k p log p of (h, w, K) class probabilities."""
  p = probabilities.astype(np.float64)
  return float(-(p * np.log(np.maximum(p, 1e-12))).sum(-1).mean())


def share_below(threshold: float) -> Callable[[np.ndarray], float]:
  return lambda probabilities: float((probabilities.max(-1) < threshold).mean())


def pool_names(source) -> List[str]:
  """What identifies each photo of an unlabeled source in `splits/labeled.txt` form."""
  if isinstance(source, files.FileSource):
    return [image[len('images/train/'):] if image.startswith('images/train/') else image
            for image, _ in source.entries]
  if hasattr(source, 'scenes'):      # the small world: the scene's index in the pool
    return [str(i) for _, i in source.scenes]
  return [str(i) for i in range(len(source))]


def rank(seg: segmenter.Segmenter, source, score: Callable[[np.ndarray], float],
         progress: bool = True) -> List[dict]:
  """[{'image', 'score'}] of every photo of `source`, most uncertain first (ties: pool order)."""
  names, scores = pool_names(source), []
  step = max(1, seg.predictor.batch)
  for lo in range(0, len(source), step):
    images = [source[i]['image'] for i in range(lo, min(lo + step, len(source)))]
    scores += [score(p.probabilities) for p in seg.predictions(images)]
    if progress and (len(scores) % 256 < step or len(scores) == len(source)):
      print(f'scored {len(scores)}/{len(source)} photos', file=sys.stderr, flush=True)
  order = sorted(range(len(scores)), key=lambda i: -scores[i])
  return [dict(image=names[i], score=scores[i]) for i in order]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS.workdir:
    raise app.UsageError('--workdir is needed')
  try:
    seg = segmenter.Segmenter.load(flags.FLAGS.workdir, flags.FLAGS.checkpoint)
    pool = datasets.make_sources(seg.config)['unlabeled']
    if not len(pool):
      raise DataError('the config has no unlabeled photos to rank (data: an empty unlabeled pool)')
  except (DataError, FileNotFoundError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  score = mean_entropy if flags.FLAGS.score == 'entropy' else share_below(
      seg.config.loss.consistency.conf_threshold)
  ranking = rank(seg, pool, score)
  top = ranking[:flags.FLAGS.count]
  print(
      f'The {len(top)} most uncertain of {len(ranking)} unlabeled photos '
      f'({SCORES[flags.FLAGS.score]}):'
  )
  for i, r in enumerate(top, 1):
    print(f'{i:4d}  {r["score"]:.4f}  {r["image"]}')
  workdir = flags.FLAGS.workdir
  storage.write_text(storage.join(workdir, PICKS), ''.join(f'{r["image"]}\n' for r in top))
  storage.write_text(
      storage.join(workdir, RANKING),
      json.dumps(
          dict(score=SCORES[flags.FLAGS.score], pool=len(ranking), checkpoint=seg.checkpoint,
               ranking=ranking), indent=1))
  print(f'wrote {storage.join(workdir, PICKS)} and {RANKING}')


def define_flags():
  """The command's flags (defined when it runs, so that the module imports beside other tools)."""
  flags.DEFINE_string('workdir', None, 'A training workdir (its config and checkpoints).')
  flags.DEFINE_string('checkpoint', None, 'A checkpoint directory or step (default: the newest).')
  flags.DEFINE_integer('count', 20, 'How many photos to suggest.')
  flags.DEFINE_enum('score', 'entropy', list(SCORES), 'The uncertainty score.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
