"""Device mesh and shardings: a 'data' axis, batch sharded, parameters replicated."""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
  """All devices of all processes on one 'data' axis."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def replicated(mesh: Mesh, tree):
  """A replicated NamedSharding for every leaf of `tree`."""
  return jax.tree.map(lambda _: NamedSharding(mesh, P()), tree)


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
