"""How the network computes, across all its modules: compute dtype, attention kernel, scanned layers,
rematerialisation.

`ComputeConfig` holds `model.dtype`, `model.attention_impl` and `model.scan_layers`; each module
takes a `compute` field (parameters stay float32 whatever the dtype). `remat` reads one tower's
`model.remat.<tower>`.
"""
import dataclasses

import jax
import jax.numpy as jnp

from hvl_jax.ops import attention
from hvl_jax.ops.layer_scan import REMAT_POLICIES, Remat

DTYPES = ('float32', 'bfloat16', 'float16')


@dataclasses.dataclass(frozen=True)
class ComputeConfig:
  """dtype: activation dtype name; attention_impl: 'auto' | 'xla' | 'cudnn' (`ops.attention`);
  scan: apply repeated layers with lax.scan (False unrolls them)."""
  dtype: str = 'float32'
  attention_impl: str = 'auto'
  scan: bool = True

  def __post_init__(self):
    if self.dtype not in DTYPES:
      raise ValueError(f'model.dtype must be one of {DTYPES}, got {self.dtype!r}')
    if self.attention_impl not in attention.IMPLEMENTATIONS:
      raise ValueError(f'model.attention_impl must be one of {attention.IMPLEMENTATIONS}, '
                       f'got {self.attention_impl!r}')
    if self.attention_impl == 'cudnn' and jax.default_backend() != 'gpu':
      raise ValueError(f"model.attention_impl='cudnn' needs a GPU; JAX's default backend here is "
                       f"{jax.default_backend()!r} (use 'auto', which picks cuDNN where it applies)")

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)


def remat(policy: str, tower: str) -> Remat:
  """A module's `remat` field from `model.remat.<tower>`: False for 'none', else the policy."""
  if policy == 'none':
    return False
  if policy not in REMAT_POLICIES:
    raise ValueError(f"model.remat.{tower} must be 'none' or one of {REMAT_POLICIES}, got {policy!r}")
  return policy
