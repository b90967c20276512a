"""How the network computes, across all its modules: compute dtype, attention kernel, scanned layers.

`ComputeConfig.from_config` reads `model.dtype`, `model.attention_impl` and `model.scan_layers`;
each module takes a `compute` field (parameters stay float32 whatever the dtype).
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

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  @classmethod
  def from_config(cls, model) -> 'ComputeConfig':
    """From the `model` ConfigDict."""
    if model.dtype not in DTYPES:
      raise ValueError(f'model.dtype must be one of {DTYPES}, got {model.dtype!r}')
    if model.attention_impl not in attention.IMPLEMENTATIONS:
      raise ValueError(f'model.attention_impl must be one of {attention.IMPLEMENTATIONS}, '
                       f'got {model.attention_impl!r}')
    if model.attention_impl == 'cudnn' and jax.default_backend() != 'gpu':
      raise ValueError(f"model.attention_impl='cudnn' needs a GPU; JAX's default backend here is "
                       f"{jax.default_backend()!r} (use 'auto', which picks cuDNN where it applies)")
    return cls(dtype=model.dtype, attention_impl=model.attention_impl, scan=model.scan_layers)


def remat_setting(model, tower: str) -> Remat:
  """False, or the rematerialisation policy of `tower` (model.remat_<tower>, model.remat_policy.<tower>)."""
  policy = model.remat_policy[tower]
  if policy not in REMAT_POLICIES:
    raise ValueError(f'model.remat_policy.{tower} must be one of {REMAT_POLICIES}, got {policy!r}')
  return model[f'remat_{tower}'] and policy
