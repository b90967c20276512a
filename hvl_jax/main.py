r"""Entry point: train, evaluate or predict from a config file.

  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 [--mode train]
  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 --mode eval
  python -m hvl_jax.main --config configs/voc_92.py --workdir runs/voc_92 --mode predict \
      --input images/ --output preds/
Any config field can be overridden: --config.optim.lr=2e-4.
"""
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'predict'], 'What to run.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'Checkpoint to evaluate (default: latest in workdir).')
_INPUT = flags.DEFINE_string('input', None, 'predict: an image or a directory of images.')
_OUTPUT = flags.DEFINE_string('output', None, 'predict: where index PNGs and overlays go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # Multi-host (launch/): explicit coordinator, or auto-detection (SLURM and other clusters).
  if os.environ.get('HVL_COORDINATOR'):
    jax.distributed.initialize(os.environ['HVL_COORDINATOR'], int(os.environ['HVL_NUM_PROCESSES']),
                               int(os.environ['HVL_PROCESS_ID']))
  elif os.environ.get('HVL_DISTRIBUTED'):
    jax.distributed.initialize()
  if not flags.FLAGS['verbosity'].present:   # library INFO chatter (Orbax) off unless asked for
    logging.set_verbosity(logging.WARNING)
  config, workdir = _CONFIG.value, _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  print(f'Resolved config ({_MODE.value}):\n{config}', flush=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, f'config_{_MODE.value}.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))

  if _MODE.value == 'train':
    from hvl_jax import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, workdir)
  elif _MODE.value == 'eval':
    from hvl_jax import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.evaluate_checkpoint(config, workdir, _CHECKPOINT.value)
  else:
    if not _INPUT.value or not _OUTPUT.value:
      raise app.UsageError('--mode predict needs --input and --output')
    from hvl_jax import predict  # pylint: disable=g-import-not-at-top
    predict.predict_files(config, workdir, _INPUT.value, _OUTPUT.value, _CHECKPOINT.value)


if __name__ == '__main__':
  app.run(main)
