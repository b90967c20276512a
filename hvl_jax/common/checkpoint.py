"""Orbax checkpoints of the train state plus the grain iterator state.

A checkpoint is numbered by the optimizer step it holds (`TrainState.step`).

Saves are atomic (Orbax writes a temporary directory and renames it when
complete), so a killed save never replaces the latest good checkpoint. On
restore, a newest checkpoint that cannot be read is reported and the previous
one is used.

In a bucket, every save and the wait for an upload are bounded by `storage_timeout_s`: a store
that stops answering ends the run with a StorageError naming it, instead of the minutes of retries
underneath; the checkpoints finished before stay, and the same command resumes from them.
"""
from typing import Any, Callable, Optional, Tuple

from absl import logging
import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from hvl_jax.common import storage
from hvl_jax.common.errors import CheckpointError


class Checkpointer:
  """Checkpoint manager for `directory` keeping the `keep` newest steps."""

  def __init__(self, directory: storage.PathLike, keep: int = 3, async_save: bool = True,
               storage_timeout_s: float = 600):
    self.directory = storage.path(directory)
    self.timeout_s = storage_timeout_s
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=async_save),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': grain.checkpoint.CheckpointHandler()})

  def steps(self):
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_iterator=None, force: bool = False) -> bool:
    items = {'state': ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(data_iterator)
    save = lambda: self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    return self.guarded(save, f'saving checkpoint {step}')

  def guarded(self, fn: Callable[[], Any], what: str) -> Any:
    """fn() bounded in time when the checkpoints are in a bucket (module docstring)."""
    if not storage.is_remote(self.directory):
      return fn()
    where = (f'{self.directory}: {what} (the checkpoints finished before stay; the same command '
             'resumes from the newest once the store answers)')
    storage.probe(self.directory, self.timeout_s)
    return storage.bounded(fn, self.timeout_s, where)

  def restore(self, abstract_state, data_iterator=None,
              step: Optional[int] = None) -> Tuple[Any, int]:
    """Restores `step` (default: newest readable). Returns (state, step); raises if none is
    readable."""

    def read(s):
      items = {'state': ocp.args.StandardRestore(abstract_state)}
      if data_iterator is not None:
        items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
      return self.manager.restore(s, args=ocp.args.Composite(**items))['state']

    return self.newest_readable(read, step)

  def restore_parts(self, abstract_parts, step: Optional[int] = None) -> Tuple[Any, int]:
    """Only some fields of the saved state, e.g. {'params': shapes, 'frozen': shapes} for
    evaluation (no optimizer state is read, nor needs to be known). Returns ({field: tree}, step)
    with numpy leaves."""
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract_parts)

    def read(s):
      with ocp.PyTreeCheckpointer() as reader:
        return reader.restore(self.directory / str(s) / 'state', args=ocp.args.PyTreeRestore(
            item=abstract_parts, restore_args=restore_args, partial_restore=True))

    return self.newest_readable(read, step)

  def newest_readable(self, read: Callable[[int], Any], step: Optional[int]) -> Tuple[Any, int]:
    """(read(s), s) for `step`, or the newest step that `read` can read; raises if none is
    readable."""
    candidates = [step] if step is not None else self.steps()[::-1]
    if not candidates:
      raise CheckpointError(f'{self.directory}: no checkpoint found')
    errors = []
    for s in candidates:
      try:
        restored = read(s)
        if errors:
          logging.warning('Restored checkpoint step %d instead of the newest: %s', s,
                          '; '.join(errors))
          print(
              f'WARNING: newest checkpoint unreadable, fell back to step {s}: {"; ".join(errors)}',
              flush=True)
        return restored, s
      except Exception as e:  # pylint: disable=broad-except
        errors.append(f'step {s} in {self.directory}: {type(e).__name__}: {e}'[:500])
    raise CheckpointError('no readable checkpoint: ' + '; '.join(errors))

  def wait(self):
    self.guarded(self.manager.wait_until_finished, 'finishing a checkpoint upload')

  def close(self):
    self.guarded(self.manager.close, 'finishing a checkpoint upload')
