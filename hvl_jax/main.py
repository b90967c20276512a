r"""Entry point: train, evaluate or predict from a config file.

  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 [--mode train]
  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 --mode eval
  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 --mode predict \
      --input images/ --output preds/
Any config field can be overridden: --config.optim.lr=2e-4.

A user's mistake (bad data, config value, missing weights or checkpoint) ends with one line
naming the file or field; HVL_TRACEBACK=1 shows the traceback instead. A run stopped by SIGTERM
writes a checkpoint and exits with status 75 (`preemption.EXIT_CODE`); the same command resumes.
"""
import os
import re
import sys
from typing import Optional

if sys.version_info < (3, 12):   # before jax, whose releases for this code need 3.12
  sys.exit(
      f'error: hvl_jax needs Python 3.12 or later, this is {sys.version.split()[0]}: install '
      f'python3.12, '
      'then `python3.12 -m venv .venv && .venv/bin/python -m pip install -r requirements.txt`')
# Before jax and transformers are imported. XLA logs a compilation of more than a few seconds as
# an error ("Very slow compile?") that reads like a failure: the console says instead that the
# step compiles and how long it took (XLA's real errors still raise). transformers advises at
# import that PyTorch is missing, which this program does not use. Either can be set to see them.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TRANSFORMERS_NO_ADVISORY_WARNINGS', '1')

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from hvl_jax.common import compilation_cache
from hvl_jax.common import config_io
from hvl_jax.common import storage
from hvl_jax.common.errors import CheckpointError
from hvl_jax.common.errors import DataError
from hvl_jax.common.errors import StorageError
from hvl_jax.data import datasets
from hvl_jax.inference import evaluator as evaluator_lib
from hvl_jax.inference import predict
from hvl_jax.models import hvl
from hvl_jax.training import preemption
from hvl_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'predict'], 'What to run.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  'Checkpoint to evaluate (default: latest in workdir).')
_INPUT = flags.DEFINE_string('input', None, 'predict: an image or a directory of images.')
_OUTPUT = flags.DEFINE_string('output', None, 'predict: where index PNGs and overlays go.')
flags.mark_flags_as_required(['config', 'workdir'])

# Raised for input a user can fix; their messages name the file or config field.
USER_ERRORS = (DataError, CheckpointError, ValueError,
               FileNotFoundError, FloatingPointError)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _MODE.value == 'predict' and not (_INPUT.value and _OUTPUT.value):
    raise app.UsageError('--mode predict needs --input and --output')
  # Multi-host (launch/): explicit coordinator, or auto-detection (SLURM and other clusters).
  if os.environ.get('HVL_COORDINATOR'):
    jax.distributed.initialize(os.environ['HVL_COORDINATOR'], int(os.environ['HVL_NUM_PROCESSES']),
                               int(os.environ['HVL_PROCESS_ID']))
  elif os.environ.get('HVL_DISTRIBUTED'):
    jax.distributed.initialize()
  if not flags.FLAGS['verbosity'].present:   # library INFO chatter (Orbax) off unless asked for
    logging.set_verbosity(logging.WARNING)
  storage.check_writable(_WORKDIR.value, '--workdir')
  if _OUTPUT.value:
    storage.check_writable(_OUTPUT.value, '--output')
  cache = compilation_cache.enable()
  config, workdir = datasets.resolved(_CONFIG.value), _WORKDIR.value
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  resolved = config_io.write(config, workdir, _MODE.value)
  print(config_summary(config, workdir, resolved, cache), flush=True)

  if _MODE.value == 'train':
    trainer.train_and_evaluate(config, workdir)
  elif _MODE.value == 'eval':
    evaluator_lib.evaluate_checkpoint(config, workdir, _CHECKPOINT.value)
  else:
    predict.predict_files(config, workdir, _INPUT.value, _OUTPUT.value, _CHECKPOINT.value)


def config_summary(config, workdir: str, resolved: str, cache: Optional[str]) -> str:
  """A few lines saying what runs where; the whole config is in `resolved`."""
  data, model = config.data, hvl.model_config(config)
  train = config.train
  steps = f'{train.steps} steps' if train.steps > 0 else f'{train.epochs} epochs'
  devices = jax.devices()
  return '\n'.join([
      f'{_MODE.value}: {config_flags.get_config_filename(flags.FLAGS["config"])} (every field in '
      f'{resolved})',
      f'  dataset  {data.name}{f" at {data.root}" if data.root else ""}, '
      f'{data.num_classes} classes, crop {data.crop_size}',
      f'  network  {model.backbone} backbone ({model.clip.pretrained or "random weights"}), '
      f'{model.queries} queries, width {model.hidden_dim}, {model.compute.dtype}',
      f'  training {steps} of {data.labeled_batch} labeled + {data.unlabeled_batch} unlabeled '
      f'images ({config.train.grad_accum} micro-step{"s" if config.train.grad_accum > 1 else ""} '
      'each)',
      f'  devices  {len(devices)} x {devices[0].platform} ({devices[0].device_kind}), JAX '
      f'{jax.__version__}',
      f'  workdir  {workdir}',
      f'  compiled programs cached in {cache} (HVL_COMPILATION_CACHE=off: no cache)'
      if cache else '  compiled programs not cached (HVL_COMPILATION_CACHE is off)'
  ])


def config_path(argv) -> str:
  """The file of the --config argument (without its ':arg')."""
  for i, a in enumerate(argv):
    if a.startswith('--config='):
      return a.split('=', 1)[1].split(':')[0]
    if a == '--config' and i + 1 < len(argv):
      return argv[i + 1].split(':')[0]
  return ''


def override_naming(argv, error: Exception) -> str:
  """The dotted field of the `--config.` override in argv that holds the missing name of `error`."""
  name = str(error.args[0]).strip('\'"') if error.args else str(error)
  fields = [a.split('=')[0][len('--config.'):] for a in argv if a.startswith('--config.')]
  return next((f for f in fields if name in f.split('.')), name)


def parse_flags(argv):
  """absl's flag parsing; a bad config file or override ends with one line naming it."""
  path = config_path(argv)
  if path and not os.path.isfile(path):
    sys.exit(f'error: --config {path}: no such config file')
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    if os.environ.get('HVL_TRACEBACK'):
      raise
    if isinstance(e, (AttributeError, KeyError)):    # an override naming no field
      hint = re.search(r'Did you mean "?(\w+)"? instead of "?(\w+)"?', str(e))
      sys.exit(f'error: the config has no field {hint.group(2)!r} (did you mean {hint.group(1)!r}?)'
               if hint else f'error: the config has no field {override_naming(argv, e)!r}')
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    sys.exit(f'error: {lines[0]} {lines[-1]}' if len(lines) > 1 else f'error: {lines[0]}')


def run(argv):
  try:
    main(argv)
  except preemption.Preempted as e:
    print(e, flush=True)
    sys.exit(preemption.EXIT_CODE)
  except StorageError as e:
    if os.environ.get('HVL_TRACEBACK'):
      raise
    # The storage libraries' threads may still be retrying the store: a normal exit would wait
    # for them.
    print(f'error: {e}', file=sys.stderr, flush=True)
    os._exit(1)
  except USER_ERRORS as e:
    if os.environ.get('HVL_TRACEBACK'):
      raise
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(run, flags_parser=parse_flags)
