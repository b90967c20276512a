"""Strong views on the accelerator (data.strong_view.where='device') against the host's numpy/OpenCV
ones (`transforms.strong_photometric`, `transforms.cutmix_box`, UniMatch's): the distributions of
many draws (each factor, the hue shift, the blur sigma, the CutMix box's area and aspect, each
probability), the pixels under the same choices, and the train step's views, drawn from its RNG."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from hvl_jax.data import device_augment as sv
from hvl_jax.data import transforms

N = 3000
SIZE = 64
CFG = sv.StrongViewConfig()


class Recording:
  """A numpy Generator that records what the host's augmentations draw: (method, args, value)."""

  def __init__(self, seed):
    self.rng, self.calls = np.random.default_rng(seed), []

  def __getattr__(self, name):
    method = getattr(self.rng, name)

    def call(*args, **kwargs):
      value = method(*args, **kwargs)
      self.calls.append((name, args, value))
      return value
    return call


def host_draws():
  """{name: array} of N host draws of one strong view and one CutMix box."""
  image = np.random.RandomState(0).randint(0, 256, (8, 8, 3)).astype(np.uint8)
  out = {
      k: [] for k in ('jitter', 'brightness', 'contrast', 'saturation', 'hue_shift', 'gray', 'blur',
                     'sigma', 'box', 'area', 'aspect')
  }
  for i in range(N):
    rec = Recording(i)
    transforms.strong_photometric(image, rec, CFG)
    randoms = [v for name, _, v in rec.calls if name == 'random']
    uniforms = [(args, v) for name, args, v in rec.calls if name == 'uniform']
    jitter = [v for args, v in uniforms if args[0] == 1 - CFG.color_jitter[0]]
    out['jitter'].append(bool(jitter))
    if jitter:
      for key, value in zip(('brightness', 'contrast', 'saturation'), jitter):
        out[key].append(value)
      out['hue_shift'].append(
          int(round([v for args, v in uniforms if args[0] == -CFG.color_jitter[3]][0] * 180)))
    out['gray'].append(randoms[1] < CFG.grayscale_p)
    sigma = [v for args, v in uniforms if args == (0.1, 2.0)]
    out['blur'].append(bool(sigma))
    out['sigma'] += sigma
    box = transforms.cutmix_box(SIZE, np.random.default_rng(N + i), CFG.cutmix_p)
    out['box'].append(box.any())
    if box.any():
      rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
      out['area'].append(box.sum() / SIZE ** 2)
      out['aspect'].append(len(rows) / len(cols))
  return {k: np.asarray(v) for k, v in out.items()}


def device_draws():
  keys = jax.random.split(jax.random.PRNGKey(0), N)
  p = jax.device_get(jax.jit(jax.vmap(lambda k: sv.draw(k, SIZE, CFG)))(keys))
  masks = np.asarray(jax.jit(jax.vmap(lambda q: sv.box_mask(q, SIZE)))(p))
  jitter = p['jitter']
  out = dict(jitter=jitter, gray=p['gray'], blur=p['blur'], sigma=p['sigma'][p['blur']],
             box=p['box'], hue_shift=p['hue_shift'][jitter].astype(int),
             **{k: p[k][jitter] for k in ('brightness', 'contrast', 'saturation')})
  boxed = masks[p['box']]
  out['area'] = boxed.sum((1, 2)) / SIZE ** 2
  out['aspect'] = boxed.any(2).sum(1) / boxed.any(1).sum(1)
  return out


def test_the_device_draws_the_host_distributions():
  host, device = host_draws(), device_draws()
  for k in ('jitter', 'gray', 'blur', 'box'):
    p, q = host[k].mean(), device[k].mean()
    sd = np.sqrt(p * (1 - p) * 2 / N)
    assert abs(p - q) < 5 * sd, (k, p, q)
  for k in ('brightness', 'contrast', 'saturation', 'hue_shift', 'sigma', 'area', 'aspect'):
    assert stats.ks_2samp(host[k], device[k]).pvalue > 1e-3, k
    assert abs(host[k].mean() - device[k].mean()) < 5 * host[k].std() / np.sqrt(len(host[k])), k
  # The ranges: factors in [0.5, 1.5], hue within a quarter turn (45 OpenCV units), sigma in
  # [0.1, 2], boxes of 2-40% of the crop (integer sides) inside it.
  assert device['brightness'].min() >= 0.5 and device['brightness'].max() <= 1.5
  assert np.abs(device['hue_shift']).max() <= 45 and set(np.unique(
      host['hue_shift'])) >= {-45, 0, 45}
  assert device['sigma'].min() >= 0.1 and device['sigma'].max() <= 2.0
  assert device['area'].min() >= 0.015 and device['area'].max() <= 0.4


def fixed(values):
  """A Generator whose `uniform` returns `values` in turn (the host's jitter factors)."""
  class Fixed:
    def uniform(self, lo, hi):
      del lo, hi
      return values.pop(0)
  return Fixed()


@pytest.mark.parametrize('factors,tolerance', [((1.2, 0.8, 1.3, 0.0), 1), ((0.6, 1.4, 0.5, 0.0), 1),
                                               ((1.0, 1.0, 1.0, 0.2), 6),
                                               ((1.3, 0.7, 1.4, -0.11), 6)])
def test_jitter_pixels_match_the_host_under_the_same_factors(factors, tolerance):
  """Up to rounding (and the hue: float HSV on the device, 8-bit HSV in OpenCV)."""
  image = np.random.RandomState(1).randint(0, 256, (32, 40, 3)).astype(np.uint8)
  host = transforms.color_jitter(image, fixed(list(factors)), *CFG.color_jitter).astype(int)
  p = dict(brightness=factors[0], contrast=factors[1], saturation=factors[2],
           hue_shift=np.round(factors[3] * 180))
  device = np.asarray(jax.jit(sv.color_jitter)(jnp.asarray(image, jnp.float32), p))
  assert np.abs(host - device).max() <= tolerance and np.abs(host - device).mean() < 1.0


@pytest.mark.parametrize('sigma', [0.1, 0.7, 1.5, 2.0])
def test_blur_matches_opencv(sigma):
  import cv2
  image = np.random.RandomState(2).randint(0, 256, (30, 45, 3)).astype(np.uint8)
  device = np.asarray(jax.jit(sv.gaussian_blur)(jnp.asarray(image, jnp.float32), sigma))
  assert np.abs(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma).astype(int) - device).max() <= 2


def test_views_are_a_function_of_the_key():
  """The same key gives the same views (a resumed step repeats them), another key others."""
  weak = np.random.RandomState(0).randint(0, 256, (4, 64, 64, 3)).astype(np.uint8)
  views = jax.jit(lambda k: sv.make_strong_views(weak, k, CFG))
  a, b, c = views(jax.random.PRNGKey(3)), views(jax.random.PRNGKey(3)), views(jax.random.PRNGKey(4))
  for k in a:
    assert a[k].shape == (weak.shape if k.startswith('image') else weak.shape[:3])
    np.testing.assert_array_equal(a[k], b[k])
  assert all((np.asarray(a[k]) != np.asarray(c[k])).any() for k in ('image_s1', 'image_s2'))
