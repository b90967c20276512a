"""The simple feature pyramid: level sizes for patches 16, 8 and 14, and its stride-16 and
stride-32 levels against a numpy transcription (1x1 projection, 2x2 max-pooling, GroupNorm)."""
import jax
import numpy as np
import pytest

from hvl_jax.models.pyramid import STRIDES, SimpleFeaturePyramid


def group_norm(x, groups, scale, bias, eps=1e-6):
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


@pytest.mark.parametrize('patch,grid,sizes', [
    (16, (8, 6), {4: (32, 24), 8: (16, 12), 16: (8, 6), 32: (4, 3)}),
    (8, (8, 6), {4: (16, 12), 8: (8, 6), 16: (4, 3), 32: (2, 2)}),      # max-pooling rounds up
    (14, (7, 5), {4: (28, 20), 8: (14, 10), 16: (7, 5), 32: (4, 3)}),
])
def test_level_sizes(patch, grid, sizes, rng):
  taps = [rng.randn(2, *grid, 12).astype(np.float32) for _ in range(3)]
  model = SimpleFeaturePyramid(dim=8, patch_size=patch)
  out = model.apply(model.init(jax.random.PRNGKey(0), taps), taps)
  assert sorted(out) == list(STRIDES)
  assert {s: out[s].shape[1:3] for s in out} == sizes
  assert all(out[s].shape == (2,) + sizes[s] + (8,) for s in out)


def test_coarse_levels_match_numpy(rng):
  taps = [rng.randn(2, 4, 6, 12).astype(np.float32) for _ in range(3)]
  model = SimpleFeaturePyramid(dim=8, patch_size=16)
  params = model.init(jax.random.PRNGKey(0), taps)['params']
  params = jax.tree.map(lambda p: np.asarray(p) + rng.randn(*p.shape).astype(np.float32) * 0.1,
                        params)
  out = model.apply({'params': params}, taps)
  x = taps[2]
  pooled = x.reshape(2, 2, 2, 3, 2, 12).max(axis=(2, 4))
  for stride, source in ((16, x), (32, pooled)):
    proj = source @ params[f'proj{stride}']['kernel'][0, 0]
    norm = params[f'norm{stride}']
    ref = group_norm(proj, 8, norm['scale'], norm['bias'])
    np.testing.assert_allclose(out[stride], ref, atol=1e-4, err_msg=f'stride {stride}')
