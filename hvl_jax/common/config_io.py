"""The resolved config as JSON: what a workdir records (`config_<mode>.json`) and what
`Segmenter.load` and `tools.export` read back to rebuild the network without the config file."""
import json
from typing import Any

import jax
import ml_collections

from hvl_jax.common import storage

TRAINING_CONFIG = 'config_train.json'


def write(config, workdir: str, mode: str) -> str:
  """Writes `<workdir>/config_<mode>.json` (process 0; atomically) and returns its path."""
  path = storage.join(workdir, f'config_{mode}.json')
  if jax.process_index() == 0:
    storage.write_text(path, config.to_json_best_effort(indent=2))
  return path


def tuples(value: Any) -> Any:
  """JSON's lists back to the tuples the config holds (its sequences are tuples)."""
  if isinstance(value, dict):
    return {k: tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(tuples(v) for v in value)
  return value


def read(path: str) -> ml_collections.ConfigDict:
  """The config written by `write`; a missing or unreadable file is an error naming the file."""
  if not storage.is_file(path):
    raise FileNotFoundError(
        f'{path}: no such config (a workdir holds {TRAINING_CONFIG} once training has started)')
  try:
    tree = json.loads(storage.read_text(path))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f'{path}: unreadable config ({e})') from e
  return ml_collections.ConfigDict(tuples(tree))
