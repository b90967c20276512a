"""The attention wrapper: padding to cuDNN's multiples of 64 keeps the mask; which implementation
runs where; the model config's check of it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.models import hvl
from hvl_jax.ops import attention
from tiny import CLASS_NAMES, tiny_config


def numpy_attention(q, k, v, mask):
  """Masked softmax attention in float64: q (B, T, N, H), k/v (B, S, N, H), mask (B|1, N|1, T,
  S)."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  scores = np.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(q.shape[-1])
  scores = np.where(mask, scores, -np.inf)
  p = np.exp(scores - scores.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum('bnts,bsnh->btnh', p, v)


@pytest.mark.parametrize('t, s, mask_shape', [(10, 70, (2, 1, 10, 70)), (64, 128, (2, 2, 64, 128)),
                                              (5, 9, (5, 9))])
def test_cudnn_path_keeps_the_mask(monkeypatch, t, s, mask_shape):
  # No cuDNN on the CPU: XLA's kernel stands in for cuDNN's, with the same arguments (padded
  # q/k/v, padded mask, true lengths), so what is checked is the padding done here.
  real = jax.nn.dot_product_attention

  def xla_for_cudnn(*args, implementation=None, **kwargs):
    assert implementation == 'cudnn'
    return real(*args, implementation='xla', **kwargs)

  monkeypatch.setattr(jax.nn, 'dot_product_attention', xla_for_cudnn)
  monkeypatch.setattr(attention, '_target_platform', lambda: 'gpu')
  rng = np.random.default_rng(0)
  q = rng.standard_normal((2, t, 2, 8)).astype(np.float32)
  k, v = (rng.standard_normal((2, s, 2, 8)).astype(np.float32) for _ in range(2))
  mask = rng.random(mask_shape) < 0.3
  mask[..., 0] = True   # every query attends somewhere
  out = attention.dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v),
                                        mask=jnp.asarray(mask), implementation='cudnn')
  full_mask = np.broadcast_to(mask.reshape((1,) * (4 - mask.ndim) + mask.shape), (2, 2, t, s))
  np.testing.assert_allclose(np.asarray(out), numpy_attention(q, k, v, full_mask), atol=1e-5)


def test_cudnn_request_runs_xla_off_gpu_and_is_refused_without_one(monkeypatch):
  q = jnp.zeros((1, 64, 2, 64), jnp.bfloat16)
  # The state is initialised on the host CPU also where training runs on a GPU
  # (sharding.on_host_cpu).
  assert attention.select_implementation(q, q, None, False, 'cudnn') == 'xla'
  monkeypatch.setattr(attention, '_target_platform', lambda: 'gpu')
  assert attention.select_implementation(q, q, q[0, 0, 0] > 0, False, 'cudnn') == 'cudnn'
  for impl, message in [('cudnn', "model.compute.attention_impl='cudnn' needs a GPU"),
                        ('flash', 'model.compute.attention_impl must be one of')]:
    with pytest.raises(ValueError, match=message):
      hvl.build_model(tiny_config(**{'model.compute.attention_impl': impl}), CLASS_NAMES)
