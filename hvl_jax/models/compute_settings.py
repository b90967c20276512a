"""How the network computes, across all its modules: compute dtype, attention kernel, scanned
layers.

`ComputeConfig` is `model.compute`; each module takes a `compute` field (parameters stay float32
whatever the dtype). What each tower rematerialises is that tower's own `remat` field.
"""
import dataclasses

import jax
import jax.numpy as jnp

from hvl_jax.ops import attention

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
      raise ValueError(f'model.compute.dtype must be one of {DTYPES}, got {self.dtype!r}')
    if self.attention_impl not in attention.IMPLEMENTATIONS:
      raise ValueError(f'model.compute.attention_impl must be one of {attention.IMPLEMENTATIONS}, '
                       f'got {self.attention_impl!r}')
    if self.attention_impl == 'cudnn' and jax.default_backend() != 'gpu':
      raise ValueError(
          f"model.compute.attention_impl='cudnn' needs a GPU; JAX's default backend here is "
          f"{jax.default_backend()!r} (use 'auto', which picks cuDNN where it applies)")

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)
