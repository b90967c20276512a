"""Scanned layers: the same hidden states and gradients as the unrolled stack, per-layer parameter
names kept, every rematerialisation policy, a bad policy named."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.ops import layer_scan


class Block(nn.Module):
  @nn.compact
  def __call__(self, x, scale):
    return x + jnp.tanh(nn.Dense(x.shape[-1])(x)) * scale


class Stack(nn.Module):
  layers: int = 4
  scan: bool = True
  remat: layer_scan.Remat = False

  def setup(self):
    self.blocks = [Block(name=f'layers_{i}') for i in range(self.layers)]

  def __call__(self, x):
    return layer_scan.run_layers(self, self.blocks, Block(parent=None), x, self.remat, self.scan,
                                 0.5)


def numpy_stack(params, x, layers):
  states = [x]
  for i in range(layers):
    p = params[f'layers_{i}']['Dense_0']
    states.append(states[-1] +
                  np.tanh(states[-1] @ np.asarray(p['kernel']) + np.asarray(p['bias'])) * 0.5)
  return states


@pytest.mark.parametrize('remat', [False, 'nothing_saveable', 'dots_with_no_batch_dims_saveable'])
def test_scanned_equals_unrolled_and_numpy(remat, rng):
  x = rng.randn(2, 5, 8).astype(np.float32)
  params = Stack().init(jax.random.PRNGKey(0), x)['params']
  assert sorted(params) == [f'layers_{i}' for i in range(4)]     # names per layer, not stacked
  scanned = Stack(remat=remat).apply({'params': params}, x)
  unrolled = Stack(scan=False).apply({'params': params}, x)
  for a, b, ref in zip(scanned, unrolled, numpy_stack(params, x, 4)):
    np.testing.assert_allclose(a, ref, atol=1e-5)
    np.testing.assert_allclose(b, ref, atol=1e-5)
  loss = lambda p, m: sum(jnp.sum(s ** 2) for s in m.apply({'params': p}, x))
  g_scan = jax.grad(loss)(params, Stack(remat=remat))
  g_unrolled = jax.grad(loss)(params, Stack(scan=False))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), g_scan, g_unrolled)


def test_scan_or_unroll_returns_every_steps_output(rng):
  """Unrolled and scanned, the carry and each step's output agree."""
  x = rng.randn(3, 4).astype(np.float32)

  class Counter(nn.Module):
    scan: bool

    @nn.compact
    def __call__(self, x):
      blocks = [nn.Dense(4, name=f'd{i}') for i in range(3)]

      def unrolled(i, h):
        h = blocks[i](h)
        return h, h.sum()

      class Step(nn.Module):
        @nn.compact
        def __call__(self, h):
          h = nn.Dense(4, name='d')(h)
          return h, h.sum()

      return layer_scan.scan_or_unroll(self, self.scan, 3, unrolled, Step(parent=None),
                                       lambda p, i: {'d': p[f'd{i}']}, x, False)

  params = Counter(scan=True).init(jax.random.PRNGKey(1), x)
  (h1, outs1), (h2, outs2) = (Counter(scan=s).apply(params, x) for s in (True, False))
  np.testing.assert_allclose(h1, h2, atol=1e-5)
  assert len(outs1) == len(outs2) == 3
  np.testing.assert_allclose(np.asarray(outs1), np.asarray(outs2), rtol=1e-5)


def test_bad_policy_is_named():
  with pytest.raises(ValueError, match="remat must be 'none' or one of .* got 'dots'"):
    layer_scan.checkpoint_policy('dots')
  assert layer_scan.checkpoint_policy(False) is None and layer_scan.checkpoint_policy(
      'none') is None
  assert layer_scan.checkpoint_policy(True) is jax.checkpoint_policies.nothing_saveable
