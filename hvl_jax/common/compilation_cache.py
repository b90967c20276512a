"""JAX's persistent compilation cache, on by default for the programs (`hvl_jax.main`,
`tools.seeds`, `tools.export`): a second start, a resume or an evaluation of the same config loads
its compiled programs (the train step, the predictor) from disk instead of compiling them again.

The directory is HVL_COMPILATION_CACHE (default ~/.cache/hvl_jax/jax); HVL_COMPILATION_CACHE=off
turns the cache off. JAX's own JAX_COMPILATION_CACHE_DIR, where set, is left to JAX and wins.
Entries are keyed by the program, its shapes and shardings, the JAX version and the device, so a
changed config or an upgrade compiles anew; the directory can be deleted at any time.
"""
import contextlib
import os
from typing import Iterator, List, Optional

import jax

DEFAULT_DIRECTORY = os.path.join('~', '.cache', 'hvl_jax', 'jax')
OFF = ('', 'off', 'none', '0', 'false')


def enable() -> Optional[str]:
  """Turns the cache on (see the module docstring); returns its directory, None when off."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  directory = os.environ.get('HVL_COMPILATION_CACHE', DEFAULT_DIRECTORY)
  if directory.strip().lower() in OFF:
    return None
  directory = os.path.expanduser(directory)
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory


HIT_EVENT = '/jax/compilation_cache/cache_hits'


@contextlib.contextmanager
def hits() -> Iterator[List[str]]:
  """Within the block, the list holds one entry per program loaded from the cache (JAX reports
  each hit as a monitoring event)."""
  loaded = []

  def listen(event, **_):
    if event == HIT_EVENT:
      loaded.append(event)

  jax.monitoring.register_event_listener(listen)
  try:
    yield loaded
  finally:
    jax.monitoring.unregister_event_listener(listen)
