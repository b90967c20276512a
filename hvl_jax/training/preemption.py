"""Preemption: SIGTERM (SLURM preemption, `scancel`, a cluster's eviction notice) asks a training
run to stop after the current optimizer step, write a checkpoint and exit with
`EXIT_CODE`, on which `launch/slurm.sbatch` requeues the job; the same command resumes.

With several processes, JAX's preemption sync manager (set up by `jax.distributed.initialize`)
receives the signal and makes every process agree on the step to stop at.
"""
import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

EXIT_CODE = os.EX_TEMPFAIL   # 75: "try again later"


class Preempted(Exception):
  """Training stopped at `step` on a preemption signal, its checkpoint written."""

  def __init__(self, step: int, directory: str):
    super().__init__(f'preempted (SIGTERM) after step {step}: checkpoint written to {directory}; '
                     'run the same command to resume')
    self.step = step


class Watcher:
  """`reached(step)` is True at the first step after SIGTERM arrived (the same step on every
  process)."""

  def __init__(self):
    self.multihost = jax.process_count() > 1
    self.signalled = False
    self.previous = None
    # Signal handlers can only be installed from the main thread (a test may train in another).
    if not self.multihost and threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self.multihost:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled

  def close(self):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None
