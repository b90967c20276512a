"""Device mesh and shardings: one 'data' axis; the batch is sharded over it, parameters are
replicated, or (FSDP, `train.fsdp`) sharded along their largest divisible dimension so that
XLA gathers them where they are used."""
import contextlib
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# Leaves smaller than this stay replicated under FSDP: gathering them costs more than it saves.
FSDP_MIN_SIZE = 2 ** 16


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """`devices` (default: all devices of all processes) on one 'data' axis."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), ('data',))


def on_host_cpu():
  """Context in which eager ops run on the host CPU (where there is one).

  Parameter initialisers run op by op; an accelerator compiles a kernel for each (75 s for the
  VOC state on an H200), the CPU runs them without. The caller places the result on devices.
  """
  try:
    return jax.default_device(jax.local_devices(backend='cpu')[0])
  except RuntimeError:     # JAX_PLATFORMS without cpu
    return contextlib.nullcontext()


def replicated(mesh: Mesh, tree):
  """A replicated NamedSharding for every leaf of `tree`."""
  return jax.tree.map(lambda _: NamedSharding(mesh, P()), tree)


def fsdp_spec(shape, n: int, min_size: int = FSDP_MIN_SIZE) -> P:
  """Shards the largest dimension divisible by n (replicated when none is or the leaf is small)."""
  if int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  dims = [i for i in np.argsort(shape)[::-1] if shape[i] % n == 0]
  if not dims:
    return P()
  spec = [None] * len(shape)
  spec[dims[0]] = 'data'
  return P(*spec)


def state_sharding(mesh: Mesh, tree, fsdp: bool = False, min_size: int = FSDP_MIN_SIZE):
  """Shardings for the train state: replicated, or FSDP-sharded leaves of at least `min_size`."""
  if not fsdp:
    return replicated(mesh, tree)
  n = mesh.devices.size
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, n, min_size)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def global_batch(mesh: Mesh, local: dict) -> dict:
  """This process's numpy slices -> global arrays sharded over 'data' along the batch axis."""
  sharding = batch_sharding(mesh)
  n = mesh.devices.size // jax.process_count()
  out = {}
  for k, v in local.items():
    if v.shape[0] % n:
      raise ValueError(f'batch field {k!r} has {v.shape[0]} rows per process, not divisible by the '
                       f'{n} local devices')
    out[k] = jax.make_array_from_process_local_data(sharding, np.asarray(v))
  return out
